#include "cli/shared_flags.h"

#include "absl/flags/flag.h"
#include "absl/flags/marshalling.h"

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
ABSL_FLAG(std::string, method, "full",
          "Fine-tuning method: full (every parameter trains), head (only pre_classifier + classifier; the "
          "encoder is frozen), lora (LoRA layers on --lora_targets, plus the head).");
ABSL_FLAG(int32_t, lora_rank, 12, "LoRA rank r (--method=lora).");
ABSL_FLAG(double, lora_alpha, 24, "LoRA alpha; the update is scaled by alpha / r.");
ABSL_FLAG(double, lora_dropout, 0.0, "Dropout on the LoRA branch's input.");
ABSL_FLAG(std::vector<std::string>, lora_targets, std::vector<std::string>({"q_lin", "v_lin"}),
          "Comma-separated Linear layers to wrap with LoRA, by qualified-name suffix (e.g. q_lin,v_lin or "
          "attention.out_lin). Every match in every block is replaced.");
ABSL_FLAG(std::string, adapter_dir, "",
          "A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors) to apply on top "
          "of --model_dir.");
ABSL_FLAG(int32_t, num_labels, 0, "Number of classes (0 = from config.json, 2 when it says nothing).");
ABSL_FLAG(std::string, device, "auto", "auto (CUDA when available, else CPU), cpu, or cuda.");
ABSL_FLAG(std::string, precision, "fp32",
          "fp32, or bf16: mixed precision (autocast) as HF's bf16=True: matmuls and attention in bfloat16, "
          "parameters, optimizer state, LayerNorm and the loss in fp32. Fast on GPUs with bf16 units; slow on most "
          "CPUs.");
ABSL_FLAG(bool, cudnn_sdp, true,
          "Let attention use cuDNN's fused kernels on CUDA (PyTorch's torch.backends.cuda.enable_cudnn_sdp; "
          "LibTorch >= 2.3, which prefers them on Hopper from 2.9 on). cuDNN plans every new sequence length "
          "anew (tens of ms of host time each), which dynamic padding keeps paying for: --nocudnn_sdp leaves "
          "the flash and memory-efficient kernels. No effect on CPU.");
ABSL_FLAG(double, comm_timeout, 900,
          "Seconds any collective (gradient all-reduce, metric sums, checkpoint agreement) may take before the "
          "rank gives up and aborts the job, so a stuck or dead peer is an error, not a hang (0 = wait forever; "
          "MPI backend).");
