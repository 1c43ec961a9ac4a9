// RFC 4180 parsing and error positions of the CSV reader.
#include "data-prep/csv_reader.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::prep {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Row {
  int64_t line;
  std::vector<std::string> fields;
};

absl::StatusOr<std::vector<Row>> ParseAll(const std::string& data) {
  FTUNE_ASSIGN_OR_RETURN(CsvReader r, CsvReader::Create("in.csv", data));
  std::vector<Row> rows;
  while (true) {
    Row row;
    FTUNE_ASSIGN_OR_RETURN(bool more, r.Next(&row.fields, &row.line));
    if (!more) break;
    rows.push_back(row);
  }
  return rows;
}

TEST(CsvReader, QuotedFieldsWithQuotesCommasAndNewlines) {
  auto rows = ParseAll("review,label\n\"He said \"\"wow\"\", then, left\nearly\",1\nplain text,0\n");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_THAT((*rows)[0].fields, ElementsAre("review", "label"));
  EXPECT_THAT((*rows)[1].fields, ElementsAre("He said \"wow\", then, left\nearly", "1"));
  EXPECT_EQ((*rows)[1].line, 2);
  EXPECT_THAT((*rows)[2].fields, ElementsAre("plain text", "0"));
  EXPECT_EQ((*rows)[2].line, 4);  // the quoted newline moved it down a line
}

TEST(CsvReader, CrlfBomEmptyFieldsAndBlankLines) {
  auto rows = ParseAll("\xEF\xBB\xBFreview,label\r\n\r\n\"a\r\nb\",\r\n,1\r\nlast,0");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 4u);
  EXPECT_THAT((*rows)[0].fields, ElementsAre("review", "label"));  // BOM skipped
  EXPECT_THAT((*rows)[1].fields, ElementsAre("a\r\nb", ""));       // CRLF inside quotes is kept
  EXPECT_EQ((*rows)[1].line, 3);                                   // blank line 2 skipped
  EXPECT_THAT((*rows)[2].fields, ElementsAre("", "1"));
  EXPECT_THAT((*rows)[3].fields, ElementsAre("last", "0"));  // no final newline
  EXPECT_EQ((*rows)[3].line, 6);
}

TEST(CsvReader, UnterminatedQuoteNamesTheLineItOpened) {
  auto rows = ParseAll("review,label\nok,1\n\"never closed,0\nmore,1\n");
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(rows.status().message()), HasSubstr("in.csv:3: unterminated quoted field"));
}

TEST(CsvReader, InvalidUtf8NamesLineAndColumn) {
  auto rows = ParseAll(
      "review,label\ngood,1\nba\xC3"
      "(d,0\n");
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(rows.status().message()), HasSubstr("in.csv:3: invalid UTF-8 (byte 0xc3 at column 3)"));
  // Overlong encodings and surrogates are invalid too.
  EXPECT_FALSE(ParseAll("a\xC0\xAF\n").ok());
  EXPECT_FALSE(ParseAll("a\xED\xA0\x80\n").ok());
  EXPECT_TRUE(ParseAll("caf\xC3\xA9,\xF0\x9F\x98\x80\n").ok());
}

TEST(CsvReader, TextAfterClosingQuoteIsAnError) {
  auto rows = ParseAll("review,label\n\"quoted\"tail,1\n");
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(rows.status().message()), HasSubstr("in.csv:2: unexpected character 't'"));
}

TEST(CsvReader, LineAndColumn) {
  int64_t line, col;
  LineAndColumn("ab\ncd\nef", 4, &line, &col);
  EXPECT_EQ(line, 2);
  EXPECT_EQ(col, 2);
  LineAndColumn("ab\ncd\nef", 0, &line, &col);
  EXPECT_EQ(line, 1);
  EXPECT_EQ(col, 1);
}

}  // namespace
}  // namespace ftune::prep
