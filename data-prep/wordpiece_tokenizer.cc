#include "data-prep/wordpiece_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/utf8.h"
#include "data-prep/unicode_tables.h"
#include "nlohmann/json.hpp"

namespace ftune::prep {
namespace {

// ASCII bytes by what the whole pipeline does with them (the same classes as unicode::Lookup gives,
// in a form the hot loop can switch on).
enum AsciiClass : uint8_t { kDrop, kSpace, kPunct, kUpper, kKeep };
struct AsciiTable {
  AsciiClass c[128];
  constexpr AsciiTable() : c() {
    for (int i = 0; i < 128; ++i) {
      if (i == '\t' || i == '\n' || i == '\r' || i == ' ') {
        c[i] = kSpace;
      } else if (i < 0x20 || i == 0x7F) {
        c[i] = kDrop;  // NUL and the other C0 controls (incl. \v \f: Cc, so dropped, not spaces)
      } else if ((i >= 33 && i <= 47) || (i >= 58 && i <= 64) || (i >= 91 && i <= 96) || (i >= 123 && i <= 126)) {
        c[i] = kPunct;
      } else if (i >= 'A' && i <= 'Z') {
        c[i] = kUpper;
      } else {
        c[i] = kKeep;
      }
    }
  }
};
constexpr AsciiTable kAscii;

// Normalizes and pre-tokenizes one piece of text (no special tokens inside), calling
// on_word(word, num_chars) for each word. Mirrors HF's order: clean -> CJK spacing -> NFD ->
// drop Mn -> lowercase -> split. NFD's canonical reordering is done on the pending run of
// combining marks (ccc != 0) before they are classified; characters that clean_text removes do
// not end such a run, since HF removes them before NFD.
class WordSplitter {
 public:
  template <typename OnWord>
  void Run(absl::string_view text, OnWord&& on_word) {
    word_.clear();
    word_chars_ = 0;
    marks_.clear();
    auto end_word = [&] {
      if (!word_.empty()) on_word(absl::string_view(word_), word_chars_);
      word_.clear();
      word_chars_ = 0;
    };
    const size_t n = text.size();
    size_t i = 0;
    while (i < n) {
      const uint8_t b = static_cast<uint8_t>(text[i]);
      if (b < 0x80) {
        ++i;
        const AsciiClass cls = kAscii.c[b];
        if (cls == kDrop) continue;
        if (!marks_.empty()) FlushMarks(end_word);
        switch (cls) {
          case kDrop: break;
          case kSpace: end_word(); break;
          case kPunct:
            end_word();
            word_.push_back(static_cast<char>(b));
            word_chars_ = 1;
            end_word();
            break;
          case kUpper:
            word_.push_back(static_cast<char>(b + 32));
            ++word_chars_;
            break;
          case kKeep:
            word_.push_back(static_cast<char>(b));
            ++word_chars_;
            break;
        }
        continue;
      }
      size_t len;
      const int32_t cp = utf8::Decode(text, i, &len);
      i += len;
      if (cp < 0) continue;  // invalid bytes read as U+FFFD, which clean_text removes
      const unicode::CharRecord& r = unicode::Lookup(cp);
      if (r.flags & unicode::kDrop) continue;
      if (r.flags & unicode::kSpace) {
        FlushMarks(end_word);
        end_word();
        continue;
      }
      const bool cjk = r.flags & unicode::kCjk;
      if (cjk) {
        FlushMarks(end_word);
        end_word();
      }
      int32_t dec[4];
      const int m = unicode::Decompose(cp, r, dec);
      for (int k = 0; k < m; ++k) {
        const unicode::CharRecord& d = dec[k] == cp ? r : unicode::Lookup(dec[k]);
        if (d.ccc != 0) {
          marks_.push_back({d.ccc, dec[k]});
        } else {
          FlushMarks(end_word);
          Classify(dec[k], d, end_word);
        }
      }
      if (cjk) {
        FlushMarks(end_word);
        end_word();
      }
    }
    FlushMarks(end_word);
    end_word();
  }

 private:
  template <typename EndWord>
  void FlushMarks(EndWord& end_word) {
    if (marks_.empty()) return;
    if (marks_.size() > 1) {
      std::stable_sort(marks_.begin(), marks_.end(), [](const Mark& a, const Mark& b) { return a.ccc < b.ccc; });
    }
    for (const Mark& mk : marks_) Classify(mk.c, unicode::Lookup(mk.c), end_word);
    marks_.clear();
  }

  // One character after NFD: drop Mn, lowercase, then split on whitespace and punctuation.
  template <typename EndWord>
  void Classify(int32_t c, const unicode::CharRecord& r, EndWord& end_word) {
    if (r.flags & unicode::kMn) return;
    int32_t lower[3];
    const int n = unicode::Lowercase(c, r, lower);
    for (int k = 0; k < n; ++k) {
      const int32_t lc = lower[k];
      const uint8_t flags = lc == c ? r.flags : unicode::Lookup(lc).flags;
      if (flags & unicode::kSpace) {
        end_word();
      } else if (flags & unicode::kPunct) {
        end_word();
        utf8::Append(lc, &word_);
        word_chars_ = 1;
        end_word();
      } else {
        utf8::Append(lc, &word_);
        ++word_chars_;
      }
    }
  }

  struct Mark {
    uint8_t ccc;
    int32_t c;
  };
  std::string word_;
  int64_t word_chars_ = 0;
  std::vector<Mark> marks_;
};

}  // namespace

absl::StatusOr<WordPieceTokenizer> WordPieceTokenizer::FromVocabFile(const std::string& path) {
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return FromVocabText(text, path);
}

absl::StatusOr<WordPieceTokenizer> WordPieceTokenizer::FromVocabText(absl::string_view text, absl::string_view name) {
  WordPieceTokenizer t;
  t.vocab_sha256_ = Sha256Hex(text);
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == absl::string_view::npos) nl = text.size();
    absl::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (utf8::FindInvalid(line) != absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", line_no, ": vocab entry is not valid UTF-8"));
    }
    // HF: BufReader::lines() (drops "\n" / "\r\n"), then str::trim_end() (Unicode White_Space).
    while (!line.empty()) {
      size_t start = line.size() - 1;
      while (start > 0 && (static_cast<uint8_t>(line[start]) & 0xC0) == 0x80) --start;
      size_t len;
      if (!(unicode::Lookup(utf8::Decode(line, start, &len)).flags & unicode::kSpace)) break;
      line.remove_suffix(line.size() - start);
    }
    const int32_t id = static_cast<int32_t>(t.tokens_.size());
    t.tokens_.emplace_back(line);
    t.vocab_[line] = id;  // a repeated token keeps its last id, like HF's HashMap::insert
  }
  if (t.tokens_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": vocab file is empty"));
  }
  for (const auto& [tok, id] : t.vocab_) {
    t.max_initial_bytes_ = std::max(t.max_initial_bytes_, tok.size());
    if (tok.size() > 2 && tok[0] == '#' && tok[1] == '#') {
      t.continued_[tok.substr(2)] = id;
      t.max_continued_bytes_ = std::max(t.max_continued_bytes_, tok.size() - 2);
    }
  }
  t.unk_id_ = t.token_id("[UNK]");
  t.cls_id_ = t.token_id("[CLS]");
  t.sep_id_ = t.token_id("[SEP]");
  t.pad_id_ = t.token_id("[PAD]");
  t.mask_id_ = t.token_id("[MASK]");
  for (const char* need : {"[UNK]", "[CLS]", "[SEP]"}) {
    if (t.token_id(need) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": vocab has no ", need, " token; is this a BERT WordPiece vocab.txt?"));
    }
  }
  // BertWordPieceTokenizer registers these as special tokens when the vocab has them.
  for (const char* s : {"[UNK]", "[SEP]", "[CLS]", "[PAD]", "[MASK]"}) {
    if (t.token_id(s) >= 0) t.specials_.emplace_back(s, t.token_id(s));
  }
  return t;
}

int32_t WordPieceTokenizer::token_id(absl::string_view token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

void WordPieceTokenizer::WordToPieces(absl::string_view word, int64_t num_chars, std::vector<int32_t>* ids) const {
  if (num_chars > kMaxInputCharsPerWord) {
    ids->push_back(unk_id_);
    return;
  }
  const size_t mark = ids->size();
  const size_t n = word.size();
  auto is_cont = [&](size_t k) { return (static_cast<uint8_t>(word[k]) & 0xC0) == 0x80; };
  size_t start = 0;
  while (start < n) {
    const auto& map = start == 0 ? vocab_ : continued_;
    size_t end = std::min(n, start + (start == 0 ? max_initial_bytes_ : max_continued_bytes_));
    while (end > start && end < n && is_cont(end)) --end;  // back to a character boundary
    int32_t found = -1;
    while (end > start) {
      auto it = map.find(word.substr(start, end - start));
      if (it != map.end()) {
        found = it->second;
        break;
      }
      --end;
      while (end > start && is_cont(end)) --end;
    }
    if (found < 0) {  // no piece covers this position: the whole word is unknown
      ids->resize(mark);
      ids->push_back(unk_id_);
      return;
    }
    ids->push_back(found);
    start = end;
  }
}

template <typename Sink>
void WordPieceTokenizer::ForEachPiece(absl::string_view text, Sink&& sink) const {
  // Split out literal special tokens first (HF matches them on the raw text, leftmost-longest).
  thread_local WordSplitter splitter;
  size_t seg_begin = 0;
  size_t scan = 0;
  while (true) {
    size_t hit = text.find('[', scan);
    int32_t special = -1;
    size_t special_len = 0;
    while (hit != absl::string_view::npos) {
      for (const auto& [tok, id] : specials_) {
        if (tok.size() > special_len && text.compare(hit, tok.size(), tok) == 0) {
          special = id;
          special_len = tok.size();
        }
      }
      if (special >= 0) break;
      hit = text.find('[', hit + 1);
    }
    const size_t seg_end = hit == absl::string_view::npos ? text.size() : hit;
    if (seg_end > seg_begin) splitter.Run(text.substr(seg_begin, seg_end - seg_begin), sink);
    if (hit == absl::string_view::npos) break;
    sink.Special(special);
    seg_begin = scan = hit + special_len;
  }
}

namespace {
struct PieceSink {
  const WordPieceTokenizer* tok;
  std::vector<int32_t>* ids;
  void (WordPieceTokenizer::*to_pieces)(absl::string_view, int64_t, std::vector<int32_t>*) const;
  void operator()(absl::string_view word, int64_t chars) { (tok->*to_pieces)(word, chars, ids); }
  void Special(int32_t id) { ids->push_back(id); }
};
struct WordSink {
  const WordPieceTokenizer* tok;
  std::vector<std::string>* words;
  void operator()(absl::string_view word, int64_t) { words->emplace_back(word); }
  void Special(int32_t id) { words->push_back(tok->token(id)); }
};
}  // namespace

void WordPieceTokenizer::EncodePieces(absl::string_view text, std::vector<int32_t>* ids) const {
  PieceSink sink{this, ids, &WordPieceTokenizer::WordToPieces};
  ForEachPiece(text, sink);
}

std::vector<std::string> WordPieceTokenizer::SplitWords(absl::string_view text) const {
  std::vector<std::string> words;
  WordSink sink{this, &words};
  ForEachPiece(text, sink);
  return words;
}

std::vector<int32_t> WordPieceTokenizer::Encode(absl::string_view text, int32_t max_length,
                                                int64_t* untruncated_length) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 4 + 2);
  ids.push_back(cls_id_);
  EncodePieces(text, &ids);
  ids.push_back(sep_id_);
  if (untruncated_length != nullptr) *untruncated_length = static_cast<int64_t>(ids.size());
  if (max_length > 0 && static_cast<int64_t>(ids.size()) > max_length) {
    const size_t keep = static_cast<size_t>(std::max<int32_t>(0, max_length - 2));
    ids.resize(keep + 1);  // [CLS] + first `keep` pieces
    ids.push_back(sep_id_);
  }
  return ids;
}

std::string WordPieceTokenizer::SettingsJson() const {
  nlohmann::json j = {
      {"type", "bert_wordpiece"},
      {"reference", "huggingface tokenizers BertWordPieceTokenizer (distilbert-base-uncased)"},
      {"lowercase", true},
      {"strip_accents", true},
      {"clean_text", true},
      {"handle_chinese_chars", true},
      {"max_input_chars_per_word", kMaxInputCharsPerWord},
      {"continuing_subword_prefix", "##"},
      {"unk_token", "[UNK]"},
      {"cls_token", "[CLS]"},
      {"sep_token", "[SEP]"},
      {"add_special_tokens", true},
      {"truncation", "keep first max_length-2 pieces"},
      {"unicode", "as tokenizers 0.23.2: categories 8.0.0, NFD 9.0.0, lowercase and whitespace 17.0.0"},
  };
  return j.dump();
}

}  // namespace ftune::prep
