// Hugging Face's fast-tokenizer file (tokenizer.json) as a tokenizer: ids (and, for sentence pairs,
// token_type_ids) equal to what `tokenizers` 0.23 (and so transformers' PreTrainedTokenizerFast)
// gives for `tokenizer(text[, text_pair], truncation=True, max_length=N)`.
//
// The file is untrusted input: it is parsed completely up front and anything malformed,
// truncated, inconsistent or unsupported is refused with one line naming the file and the field
// (`tok.json: model.merges[17]: "a bc" names no token of model.vocab ("bc")`), never a crash.
//
// What it implements, in HF's order (tokenizers/src/tokenizer/mod.rs, added_vocabulary.rs):
//   1. added tokens with normalized=false are split out of the raw text (leftmost-longest, with
//      single_word / lstrip / rstrip as HF applies them);
//   2. the normalizer runs on each remaining piece: BertNormalizer (clean_text,
//      handle_chinese_chars, strip_accents, lowercase), NFC, NFD, NFKC, NFKD, Lowercase,
//      StripAccents, Strip, Replace (string or regex), Prepend, ByteLevel, Sequence;
//   3. added tokens with normalized=true are split out of the normalized pieces;
//   4. the pre-tokenizer: BertPreTokenizer, ByteLevel (add_prefix_space, use_regex), Whitespace,
//      WhitespaceSplit, Split (string or regex; Removed, Isolated, MergedWithPrevious,
//      MergedWithNext, Contiguous; invert), Metaspace (prepend_scheme always/first/never, split),
//      Punctuation, Digits, CharDelimiterSplit, Sequence;
//   5. the model on each word: WordPiece, BPE (merges as "a b" strings or ["a", "b"] pairs,
//      continuing_subword_prefix, end_of_word_suffix, byte_fallback, unk_token, fuse_unk,
//      ignore_merges; dropout must be null or 0), WordLevel;
//   6. truncation (longest_first, right, as transformers asks for truncation=True) to max_length
//      minus the post-processor's special tokens, then the post-processor: BertProcessing,
//      RobertaProcessing, TemplateProcessing, ByteLevel (ids unchanged), Sequence; none = the
//      sequences concatenated (type ids 0 and 1).
// Regular expressions (ByteLevel's, Split's, Replace's) run on Oniguruma, HF's own engine.
// Character classes: as data-prep/unicode_tables.h (HF's Unicode versions) where those tables
// have them, ICU for NFC/NFKC/NFKD, marks and numerics (restricted to Unicode 9.0 for the
// normalization forms, as HF's unicode-normalization crate); see data-prep/README.md.
// The file's own "truncation" and "padding" are ignored, as transformers does when it is told
// how to truncate. Thread-safe: every Encode* is const.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/status.h"

namespace ftune::prep {

namespace tokjson {
class Pipeline;  // tokenizer_json.cc
}

class JsonTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<JsonTokenizer>> FromFile(const std::string& path);
  // Same from the file's contents; `name` (the path) starts every error message.
  static absl::StatusOr<std::unique_ptr<JsonTokenizer>> FromJson(absl::string_view json, absl::string_view name);
  ~JsonTokenizer();

  // HF's encode(text, add_special_tokens=False): the ids of one sequence, appended to `ids`.
  // Invalid UTF-8 bytes read as U+FFFD.
  void EncodeSequence(absl::string_view text, std::vector<int32_t>* ids) const;

  // HF's encode(a[, b]) with special tokens: truncated with longest_first to max_length when
  // max_length > 0 (which must then be at least num_special_tokens(b != nullptr)), then the
  // post-processor. `type_ids` (optional) receives the token_type_ids; `untruncated` (optional)
  // the length without truncation.
  void Encode(absl::string_view a, const absl::string_view* b, int32_t max_length, std::vector<int32_t>* ids,
              std::vector<int32_t>* type_ids = nullptr, int64_t* untruncated = nullptr) const;

  // The words the model sees (normalized and pre-tokenized; an added token as "<added ID>").
  std::vector<std::string> Words(absl::string_view text) const;

  // Special tokens the post-processor adds to one sequence / to a pair.
  int32_t num_special_tokens(bool pair) const;
  // Whether the post-processor gives a pair any nonzero token_type_id (BERT's 0/1 segments).
  bool pair_type_ids() const;
  // Every id is below this: the model's vocab and the added tokens.
  int64_t vocab_size() const;
  int32_t token_id(absl::string_view token) const;  // -1 when neither the model nor an added token has it
  const std::string& sha256() const { return sha256_; }  // of the file's bytes
  // A JSON object summarising the pipeline (recorded in the HDF5 file's `tokenizer` attribute).
  std::string SettingsJson() const;

 private:
  JsonTokenizer();
  std::unique_ptr<tokjson::Pipeline> p_;
  std::string sha256_;
};

// The Unicode version (major * 10 + minor, e.g. 140 for 14.0) that assigned `c`, from ICU; 0 for
// an unassigned code point, -1 in a build without ICU. Characters assigned after Unicode 14.0
// (Debian 12's Oniguruma) and 15.0 (its ICU) may be classified differently from HF's newer
// tables; the oracle tests leave them out (data-prep/README.md).
int UnicodeAge(int32_t c);
inline constexpr int kJsonTokenizerExactUnicodeAge = 140;

}  // namespace ftune::prep
