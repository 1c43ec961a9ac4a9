// libFuzzer target: prep::JsonTokenizer::FromJson on arbitrary bytes (mostly tokenizer.json files,
// from the seeds in tests/fixtures/fuzz/tokenizer_json), then encoding with what it accepted.
//
// Invariants:
//  - a refused file gets InvalidArgument with a one-line message naming the file;
//  - an accepted file encodes fixed texts, the input's own bytes as text, and a pair, without a
//    crash, with every id in [0, vocab_size), as many token_type_ids as ids, at most max_length
//    ids when truncating (max_length at least the special tokens), and the same result twice;
//  - encoding with max_length 0 gives num_special_tokens more ids than EncodeSequence.
#include <cstdint>
#include <string>
#include <vector>

#include "data-prep/tokenizer_json.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ftune;
  using namespace ftune::fuzz;
  constexpr char kLabel[] = "fuzz/tokenizer.json";
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto t = prep::JsonTokenizer::FromJson(text, kLabel);
  if (!t.ok()) {
    CheckError(t.status(), kLabel, {absl::StatusCode::kInvalidArgument});
    return 0;
  }
  const prep::JsonTokenizer& tok = **t;
  const int64_t vocab = tok.vocab_size();
  FUZZ_CHECK(vocab > 0, "accepted tokenizer with an empty vocabulary");
  const std::string own(text.substr(0, 200));
  const std::vector<std::string> texts = {"", "Hello, world! It's 10/10.", " [CLS] <s> a\xCC\x81 \xE4\xB8\xAD  x ", own};
  for (const std::string& a : texts) {
    std::vector<int32_t> seq;
    tok.EncodeSequence(a, &seq);
    for (int32_t id : seq) FUZZ_CHECK(id >= 0 && id < vocab, "EncodeSequence id outside the vocabulary");
    for (int32_t max_length : {0, 3, 16}) {
      for (bool pair : {false, true}) {
        const absl::string_view b = texts[1];
        const int32_t special = tok.num_special_tokens(pair);
        if (max_length > 0 && max_length < special) continue;
        std::vector<int32_t> ids, types, ids2, types2;
        int64_t untruncated = 0;
        tok.Encode(a, pair ? &b : nullptr, max_length, &ids, &types, &untruncated);
        tok.Encode(a, pair ? &b : nullptr, max_length, &ids2, &types2);
        FUZZ_CHECK(ids == ids2 && types == types2, "encoding twice differs");
        FUZZ_CHECK(types.size() == ids.size(), "token_type_ids and ids differ in length");
        for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < vocab, "Encode id outside the vocabulary");
        FUZZ_CHECK(untruncated >= static_cast<int64_t>(ids.size()), "untruncated length below the length");
        if (max_length > 0) FUZZ_CHECK(static_cast<int32_t>(ids.size()) <= max_length, "longer than max_length");
        if (max_length == 0 && !pair) {
          FUZZ_CHECK(ids.size() == seq.size() + static_cast<size_t>(special),
                     "Encode is not EncodeSequence plus the special tokens");
        }
      }
    }
  }
  return 0;
}
