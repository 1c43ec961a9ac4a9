// libFuzzer target: prep::WordPieceTokenizer::Encode on arbitrary bytes (including invalid UTF-8)
// with the vendored bert-base-uncased vocab (tests/fixtures/tokens/vocab.txt).
// Input: 2 bytes choose max_length (0 = no truncation, else 1..1024), the rest is the text.
//
// Invariants:
//  - every id is in [0, vocab_size); the encoding starts with [CLS] and ends with [SEP], and
//    [CLS]/[SEP] appear nowhere else unless the text spells them literally;
//  - truncation: the result has min(untruncated, max(2, max_length)) ids and is the first
//    max_length - 1 ids of the untruncated encoding followed by [SEP];
//  - an invalid byte behaves exactly like U+FFFD (both are dropped by clean_text), so the
//    tokenizer never sees a different word boundary because of broken input;
//  - the pipeline is consistent: encoding each word of SplitWords(text) on its own gives the same
//    pieces as encoding the text (normalisation + pre-tokenisation are idempotent);
//  - Encode is deterministic.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "data-prep/wordpiece_tokenizer.h"
#include "fuzz_util.h"

namespace ftune::fuzz {
namespace {

const prep::WordPieceTokenizer& Tokenizer() {
  static const prep::WordPieceTokenizer* tok = [] {
    auto t = prep::WordPieceTokenizer::FromVocabFile(std::string(FTUNE_FIXTURES_DIR) + "/tokens/vocab.txt");
    if (!t.ok()) Fail(__FILE__, __LINE__, "vocab", t.status().ToString());
    return new prep::WordPieceTokenizer(*std::move(t));
  }();
  return *tok;
}

std::string Ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

// Each byte that does not start a valid UTF-8 sequence replaced by U+FFFD's encoding.
std::string ReplaceInvalid(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    size_t len;
    if (utf8::Decode(text, i, &len) < 0) {
      out += "\xEF\xBF\xBD";
    } else {
      out.append(text.data() + i, len);
    }
    i += len;
  }
  return out;
}

}  // namespace
}  // namespace ftune::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ftune;
  using namespace ftune::fuzz;
  if (size < 2) return 0;
  const prep::WordPieceTokenizer& tok = Tokenizer();
  const int32_t max_length = (data[0] | (data[1] << 8)) % 1025;
  const absl::string_view text(reinterpret_cast<const char*>(data) + 2, size - 2);

  int64_t untruncated = -1;
  const std::vector<int32_t> ids = tok.Encode(text, max_length, &untruncated);
  const std::vector<int32_t> full = tok.Encode(text, 0);
  FUZZ_CHECK(tok.Encode(text, max_length) == ids, "Encode is not deterministic");
  FUZZ_CHECK(full.size() >= 2 && full.front() == tok.cls_id() && full.back() == tok.sep_id(),
             "not [CLS] ... [SEP]: " + Ids(full));
  FUZZ_CHECK(untruncated == static_cast<int64_t>(full.size()), "untruncated_length is wrong");
  for (int32_t id : full) FUZZ_CHECK(id >= 0 && id < tok.vocab_size(), "id out of range: " + Ids(full));
  if (!absl::StrContains(text, "[CLS]") && !absl::StrContains(text, "[SEP]")) {
    for (size_t i = 1; i + 1 < full.size(); ++i) {
      FUZZ_CHECK(full[i] != tok.cls_id() && full[i] != tok.sep_id(), "stray [CLS]/[SEP]: " + Ids(full));
    }
  }

  // Truncation.
  std::vector<int32_t> want = full;
  if (max_length > 0 && static_cast<int64_t>(full.size()) > max_length) {
    want.assign(full.begin(), full.begin() + std::max<int32_t>(1, max_length - 1));
    want.push_back(tok.sep_id());
  }
  FUZZ_CHECK(ids == want, "truncation to " + std::to_string(max_length) + " gave " + Ids(ids) + "; want " + Ids(want));
  if (max_length >= 2) FUZZ_CHECK(static_cast<int64_t>(ids.size()) <= max_length, "longer than max_length");

  // Invalid bytes are U+FFFD.
  const std::string replaced = ReplaceInvalid(text);
  if (replaced != text) {
    FUZZ_CHECK(tok.Encode(replaced, 0) == full,
               "an invalid byte is not treated like U+FFFD: " + Ids(full) + " vs " + Ids(tok.Encode(replaced, 0)));
  }

  // Words -> pieces is consistent with text -> pieces.
  std::vector<int32_t> pieces, by_word;
  tok.EncodePieces(text, &pieces);
  FUZZ_CHECK(pieces.size() + 2 == full.size(), "EncodePieces disagrees with Encode");
  for (const std::string& w : tok.SplitWords(text)) {
    FUZZ_CHECK(!w.empty() && utf8::FindInvalid(w) == absl::string_view::npos, "empty or invalid word");
    const size_t before = by_word.size();
    tok.EncodePieces(w, &by_word);
    FUZZ_CHECK(by_word.size() > before, "a word produced no pieces: '" + w + "'");
  }
  FUZZ_CHECK(by_word == pieces,
             "words re-encoded one by one give " + Ids(by_word) + " but the text gives " + Ids(pieces));
  return 0;
}
