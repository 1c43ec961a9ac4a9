// BERT uncased WordPiece, token-for-token identical to Hugging Face's `distilbert-base-uncased`
// fast tokenizer (tokenizers' BertWordPieceTokenizer: lowercase, clean_text, handle_chinese_chars,
// strip_accents unset => on). The pipeline, in HF's order:
//   1. literal special tokens ([CLS], [SEP], [PAD], [MASK], [UNK], case-sensitive, anywhere in the
//      raw text) are split out and map to their ids;
//   2. BertNormalizer on each remaining piece: drop U+0000, U+FFFD and control characters
//      (categories Cc, Cf, Co: every private-use character), map whitespace to ' ', put spaces
//      around CJK ideographs, NFD and drop nonspacing marks (Mn), lowercase;
//   3. BertPreTokenizer: split on whitespace, each punctuation character (ASCII punctuation or
//      Unicode P*) becomes its own word;
//   4. WordPiece: greedy longest-match-first with "##" continuations; a word longer than 100
//      characters, or one that cannot be covered by vocab pieces, becomes a single [UNK];
//   5. [CLS] pieces [SEP], truncated to max_length by keeping the first max_length - 2 pieces.
// Character classes come from data-prep/unicode_tables.h, built from the Unicode versions HF's
// own tables come from (categories 8.0, NFD 9.0, case and whitespace 17.0), so characters assigned
// since then are treated as HF treats them. Thread-safe: Encode is const.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "common/status.h"

namespace ftune::prep {

class WordPieceTokenizer {
 public:
  // Reads a BERT vocab.txt (one token per line, id = line number; trailing whitespace is trimmed
  // and a repeated token keeps its last line, as HF does). Needs [UNK], [CLS] and [SEP].
  static absl::StatusOr<WordPieceTokenizer> FromVocabFile(const std::string& path);
  // Same from the file's contents; `name` appears in error messages.
  static absl::StatusOr<WordPieceTokenizer> FromVocabText(absl::string_view text, absl::string_view name);

  // [CLS] + word pieces + [SEP]. max_length > 0 keeps the first max_length - 2 pieces (HF's
  // truncation of a single sequence); 0 = no truncation. `untruncated_length`, when given,
  // receives the length the encoding would have without truncation.
  std::vector<int32_t> Encode(absl::string_view text, int32_t max_length, int64_t* untruncated_length = nullptr) const;
  // Appends the word pieces of `text` (no [CLS]/[SEP], no truncation) to `ids`.
  void EncodePieces(absl::string_view text, std::vector<int32_t>* ids) const;
  // The words WordPiece sees (normalized and pre-tokenized; special tokens as themselves).
  std::vector<std::string> SplitWords(absl::string_view text) const;

  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }  // lines in vocab.txt
  const std::string& vocab_sha256() const { return vocab_sha256_; }
  int32_t token_id(absl::string_view token) const;  // -1 when not in the vocab
  const std::string& token(int32_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  int32_t unk_id() const { return unk_id_; }
  int32_t cls_id() const { return cls_id_; }
  int32_t sep_id() const { return sep_id_; }
  int32_t pad_id() const { return pad_id_; }    // -1 when absent
  int32_t mask_id() const { return mask_id_; }  // -1 when absent

  // The settings above as a JSON object (recorded in the HDF5 files).
  std::string SettingsJson() const;

  static constexpr int kMaxInputCharsPerWord = 100;

 private:
  WordPieceTokenizer() = default;
  template <typename Sink>
  void ForEachPiece(absl::string_view text, Sink&& sink) const;
  void WordToPieces(absl::string_view word, int64_t num_chars, std::vector<int32_t>* ids) const;

  std::vector<std::string> tokens_;                      // id -> token
  absl::flat_hash_map<std::string, int32_t> vocab_;      // whole vocab (word-initial lookups)
  absl::flat_hash_map<std::string, int32_t> continued_;  // "##x" entries, stored as "x"
  size_t max_initial_bytes_ = 0, max_continued_bytes_ = 0;
  std::vector<std::pair<std::string, int32_t>> specials_;  // literal special tokens in the vocab
  std::string vocab_sha256_;
  int32_t unk_id_ = -1, cls_id_ = -1, sep_id_ = -1, pad_id_ = -1, mask_id_ = -1;
};

}  // namespace ftune::prep
