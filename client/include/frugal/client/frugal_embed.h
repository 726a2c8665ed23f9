/* Embedding the Frugal agent from C (Android NDK, Swift, any FFI): the C ABI
 * over frugal/client/embed.h, version FRUGAL_EMBED_ABI_VERSION. Structs only
 * grow at their end, with struct_size telling the library which fields exist. */
#ifndef FRUGAL_CLIENT_FRUGAL_EMBED_H_
#define FRUGAL_CLIENT_FRUGAL_EMBED_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FRUGAL_EMBED_ABI_VERSION 1

typedef struct frugal_train_request {
  uint32_t round;
  uint64_t seed;
  uint32_t epochs;
  uint32_t batch_size;
  float learning_rate;
} frugal_train_request;

typedef struct frugal_train_report {
  uint64_t examples;
  double mean_loss;
  double flops;
} frugal_train_report;

typedef struct frugal_eval_report {
  uint64_t examples;
  double accuracy;
  double loss;
} frugal_eval_report;

/* The app's trainer. Callbacks return 0 on success, anything else to decline. */
typedef struct frugal_trainer {
  size_t struct_size; /* sizeof(frugal_trainer) */
  void* user;
  uint32_t input_dim;
  uint32_t num_classes;
  uint64_t num_examples;
  int (*train)(void* user, float* params, size_t num_params, const frugal_train_request* request,
               frugal_train_report* report);
  int (*evaluate)(void* user, const float* params, size_t num_params, frugal_eval_report* report);
} frugal_trainer;

/* FRUGAL_EMBED_ABI_VERSION of the library linked. */
int frugal_embed_abi_version(void);

/* Runs the agent (see frugal::embed::Run): config_path may be NULL or "",
 * overrides an array of n "key=value" strings. Returns 0 when the run is
 * complete, else the frugal-client exit code (1 revoked, 2 setup, 3 protocol,
 * 4 unauthenticated, 5 gave up), with a message in error[error_len] if given. */
int frugal_embed_run(const char* config_path, const char* const* overrides, size_t n_overrides,
                     const frugal_trainer* trainer, char* error, size_t error_len);

#ifdef __cplusplus
}
#endif

#endif /* FRUGAL_CLIENT_FRUGAL_EMBED_H_ */
