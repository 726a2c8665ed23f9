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

/* One simulated client's own examples, as frugal_embed_simulate hands them to
 * the app's trainer (valid for the call only). */
typedef struct frugal_client_data {
  uint32_t client; /* the simulated client's id */
  size_t num_examples;
  size_t input_dim;
  const float* features; /* num_examples rows of input_dim values */
  const int32_t* labels; /* num_examples labels */
} frugal_client_data;

/* The app's trainer for simulated clients: trains params in place on the
 * client's examples, as frugal_trainer.train does on a device's own data.
 * Returns 0 on success, anything else to fail the client's task. Called from
 * several threads at once when the scenario sets run.threads > 1. */
typedef struct frugal_sim_trainer {
  size_t struct_size; /* sizeof(frugal_sim_trainer) */
  void* user;
  int (*train)(void* user, const frugal_client_data* data, float* params, size_t num_params,
               const frugal_train_request* request, frugal_train_report* report);
} frugal_sim_trainer;

/* Runs the simulator in this process (frugal-sim -c scenario_path --set ...
 * --out out_dir; out_dir may be NULL or "" to write nothing), every client
 * training with `trainer` on its share of the scenario's data, in the layout
 * of the scenario's model. Needs the frugal_embed_sim library. Returns 0 when
 * the run completed, 2 for a bad scenario or trainer, 1 when the run failed,
 * with a message in error[error_len] if given. */
int frugal_embed_simulate(const char* scenario_path, const char* const* overrides, size_t n_overrides,
                          const char* out_dir, const frugal_sim_trainer* trainer, char* error, size_t error_len);

#ifdef __cplusplus
}
#endif

#endif /* FRUGAL_CLIENT_FRUGAL_EMBED_H_ */
