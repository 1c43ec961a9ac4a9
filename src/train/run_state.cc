#include "train/run_state.h"

#include <string>

#include "absl/strings/str_format.h"

namespace ftune::train {

using json = nlohmann::json;

Totals& Totals::operator+=(const Totals& o) {
  loss += o.loss;
  examples += o.examples;
  tokens += o.tokens;
  padded_tokens += o.padded_tokens;
  units += o.units;
  return *this;
}

absl::StatusOr<Totals> Totals::SumOverRanks(dist::Communicator& comm) const {
  double v[5] = {loss, examples, tokens, padded_tokens, units};
  FTUNE_RETURN_IF_ERROR(comm.AllReduce(v, 5, dist::DType::kFloat64, dist::ReduceOp::kSum));
  return Totals{v[0], v[1], v[2], v[3], v[4]};
}

void Totals::ToJson(const char* prefix, json* j) const {
  const std::string p(prefix);
  (*j)[p + "loss"] = loss;
  (*j)[p + "examples"] = examples;
  (*j)[p + "tokens"] = tokens;
  (*j)[p + "padded_tokens"] = padded_tokens;
  (*j)[p + "units"] = units;
}

Totals Totals::FromJson(const char* prefix, const json& j) {
  const std::string p(prefix);
  Totals t;
  t.loss = j.value(p + "loss", 0.0);
  t.examples = j.value(p + "examples", 0.0);
  t.tokens = j.value(p + "tokens", 0.0);
  t.padded_tokens = j.value(p + "padded_tokens", t.tokens);
  t.units = j.value(p + "units", t.examples);  // classification checkpoints before units existed
  return t;
}

json EpochRecord::ToJson() const {
  json j = {{"epoch", epoch},
            {"step", step},
            {"train_loss", train_loss()},
            {"seconds", seconds},
            {"samples_per_second", samples_per_second()},
            {"tokens_per_second", tokens_per_second()},
            {"padding_fraction", totals.PaddingFraction()}};
  totals.ToJson("", &j);
  if (eval) j.update(eval->ToJson());
  return j;
}

absl::StatusOr<EpochRecord> EpochRecord::FromJson(const json& j) {
  EpochRecord e;
  e.epoch = j.at("epoch");
  e.step = j.at("step");
  e.seconds = j.at("seconds");
  e.totals = Totals::FromJson("", j);
  if (!j.contains("examples")) {  // written before the sums were stored: derive them
    e.totals.examples = j.value("samples_per_second", 0.0) * e.seconds;
    e.totals.loss = j.value("train_loss", 0.0) * e.totals.examples;
    e.totals.units = e.totals.examples;
  }
  if (j.contains("eval_total")) {
    e.eval = EvalStats::FromJson(j);
  } else if (j.contains("eval")) {  // the nested form of older checkpoints
    EvalStats s;
    s.correct = j["eval"].at("correct");
    s.total = j["eval"].at("total");
    s.loss_sum = j["eval"].at("loss_sum");
    s.seconds = j["eval"].at("seconds");
    e.eval = s;
  }
  return e;
}

EpochRecord& RunState::CloseEpoch(const Totals& global, std::optional<EvalStats> eval) {
  EpochRecord rec;
  rec.epoch = epoch + 1;
  rec.step = global_step;
  rec.totals = global;
  rec.seconds = epoch_seconds;
  rec.eval = std::move(eval);
  epochs.push_back(rec);
  run_totals += global;
  train_seconds += epoch_seconds;
  ++epoch;
  step_in_epoch = 0;
  eval_pending = false;
  epoch_totals = Totals();
  epoch_seconds = 0;
  return epochs.back();
}

json RunState::ToJson() const {
  json j = {{"global_step", global_step},     {"epoch", epoch},
            {"step_in_epoch", step_in_epoch}, {"eval_pending", eval_pending},
            {"epoch_seconds", epoch_seconds}, {"train_seconds", train_seconds},
            {"comm_seconds", comm_seconds}};
  epoch_totals.ToJson("epoch_", &j);
  window.ToJson("window_", &j);
  run_totals.ToJson("run_", &j);
  json epochs_json = json::array();
  for (const auto& e : epochs) epochs_json.push_back(e.ToJson());
  j["epochs"] = epochs_json;
  return j;
}

absl::StatusOr<RunState> RunState::FromJson(const json& j) {
  RunState s;
  s.global_step = j.at("global_step");
  s.epoch = j.at("epoch");
  s.step_in_epoch = j.at("step_in_epoch");
  s.eval_pending = j.at("eval_pending");
  s.epoch_seconds = j.at("epoch_seconds");
  s.train_seconds = j.at("train_seconds");
  s.comm_seconds = j.at("comm_seconds");
  s.epoch_totals = Totals::FromJson("epoch_", j);
  s.window = Totals::FromJson("window_", j);
  s.run_totals = Totals::FromJson("run_", j);
  for (const auto& e : j.at("epochs")) {
    FTUNE_ASSIGN_OR_RETURN(EpochRecord r, EpochRecord::FromJson(e));
    s.epochs.push_back(r);
  }
  if (!j.contains("run_examples")) {  // older checkpoints kept only these two run sums
    s.run_totals = Totals();
    for (const auto& e : s.epochs) s.run_totals += e.totals;
  }
  return s;
}

}  // namespace ftune::train
