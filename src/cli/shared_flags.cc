#include "cli/shared_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face model directory: config.json + model.safetensors (+ vocab.txt). Both a saved "
          "DistilBertForSequenceClassification and the hub's distilbert-base-uncased layout load.");
ABSL_FLAG(std::string, model_config, "",
          "A DistilBERT config.json to build a randomly initialised model from (no weights). With neither "
          "--model_dir nor --model_config, the distilbert-base-uncased architecture is used.");
ABSL_FLAG(std::string, vocab, "",
          "WordPiece vocab.txt (default: <model_dir>/vocab.txt).");
ABSL_FLAG(int32_t, max_length, 512,
          "Maximum sequence length in tokens including [CLS] and [SEP]; longer inputs keep their first "
          "max_length-2 word pieces.");
ABSL_FLAG(std::string, output, "", "Output path (file or directory, depending on the command).");
ABSL_FLAG(int32_t, threads, 0, "Worker threads (0 = all cores of this process's share of the node).");
