// Calls tests/hf/oracle.py (Hugging Face's own code) from a test and reads the JSON it prints.
// Where python3 lacks transformers / PEFT / safetensors / tokenizers / h5py the tests skip and say
// why; tests/compat/testing-root.sh runs them in a Debian testing root that has all of them.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/shared_dir.h"

namespace ftune::hf {

struct OracleResult {
  int exit_code = -1;
  nlohmann::json out;  // the last line of stdout, parsed (null when it is not JSON)
  std::string stderr_tail;
};

inline std::string Shell(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// PYTHONPATH with PEFT's source (../shared/oracle/peft-0.20.0/src, where it exists, after the
// caller's own PYTHONPATH: the testing root mounts PEFT at /opt/peft and says so there).
inline std::string PythonPath() {
  std::string p = std::getenv("PYTHONPATH") ? std::getenv("PYTHONPATH") : "";
  const std::string peft = ::ftune::testing::SharedDir() + "/oracle/peft-0.20.0/src";
  if (std::ifstream(peft + "/peft/__init__.py").good()) p += (p.empty() ? "" : ":") + peft;
  return p;
}

inline OracleResult RunOracle(const std::string& args) {
  char tmpl[] = "/tmp/ftune_oracle_err.XXXXXX";
  const int fd = mkstemp(tmpl);
  if (fd >= 0) close(fd);
  const std::string err = tmpl;
  const std::string cmd = "PYTHONPATH=" + Shell(PythonPath()) + " OMP_NUM_THREADS=2 python3 " +
                          Shell(std::string(FTUNE_SOURCE_DIR) + "/tests/hf/oracle.py") + " " + args + " 2>" + err;
  OracleResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::istringstream lines(out);
  std::string line, last;
  while (std::getline(lines, line)) {
    if (!line.empty()) last = line;
  }
  r.out = nlohmann::json::parse(last, nullptr, /*allow_exceptions=*/false);
  std::ifstream e(err);
  std::stringstream ss;
  ss << e.rdbuf();
  const std::string all = ss.str();
  r.stderr_tail = all.size() > 3000 ? all.substr(all.size() - 3000) : all;
  std::remove(err.c_str());
  return r;
}

// Empty when the oracle can run; otherwise why not (said once per test as the skip reason).
inline const std::string& OracleMissing() {
  static const std::string why = [] {
    OracleResult r = RunOracle("probe");
    if (r.exit_code == 0) return std::string();
    std::string missing = r.out.is_object() ? r.out["missing"].dump() : r.stderr_tail;
    return "needs python3 with torch, transformers, safetensors, tokenizers, h5py and PEFT (" + missing +
           "); tests/compat/testing-root.sh runs these tests in a Debian testing root that has them";
  }();
  return why;
}

#define FTUNE_REQUIRE_ORACLE()                                           \
  do {                                                                   \
    if (!::ftune::hf::OracleMissing().empty()) GTEST_SKIP() << ::ftune::hf::OracleMissing(); \
  } while (0)

// Runs the oracle and fails the test (with its stderr) unless it exits 0 with JSON.
#define FTUNE_ORACLE_OK(result)                                                             \
  do {                                                                                      \
    ASSERT_EQ((result).exit_code, 0) << (result).stderr_tail;                               \
    ASSERT_TRUE((result).out.is_object()) << "no JSON on stdout; stderr: " << (result).stderr_tail; \
  } while (0)

}  // namespace ftune::hf
