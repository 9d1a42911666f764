/* nabla/checkpoint.h — everything training needs to continue exactly.
 *
 * A checkpoint is one safetensors file, written atomically (a temporary file
 * in the same folder, fsync, rename, folder fsync): a crash or a full disk
 * leaves the previous checkpoint whole. It holds
 *   - the model's parameters and buffers under their state_dict names, with
 *     the model's name and configuration in the metadata, so it is also a
 *     weights file (nb_model_load_file, `nabla eval --weights`);
 *   - the optimizer: each state buffer as a tensor "__optim__.<name>"
 *     (exp_avg, momentum_buffer, ...: model->numel floats at the model's
 *     offsets), the step count, every group's hyperparameters (learning
 *     rates included) and the group of every parameter;
 *   - optionally the schedule (its spec and state), a generator (the
 *     context's, which dropout draws from) and a loader (its order and
 *     position);
 *   - the caller's own metadata pairs (epoch, running sums, settings).
 * Numbers are stored exactly: doubles in C's hexadecimal form (%a), 64-bit
 * generator words in hex.
 *
 * Loading restores into objects built the same way as the saved ones (same
 * model and configuration, an optimizer of the same kind with the same number
 * of groups, a schedule of the same spec, a loader over the same data and
 * batch size): after nb_checkpoint_load the next steps give bit-identical
 * results to a run that never stopped (same thread count). Everything is
 * checked before anything changes: on an error the objects are as they were. */
#ifndef NABLA_CHECKPOINT_H
#define NABLA_CHECKPOINT_H

#include "core.h"
#include "data.h"
#include "io.h"
#include "nn.h"
#include "optim.h"
#include "schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a checkpoint covers; the pointers may be NULL but model and optim. */
typedef struct nb_checkpoint {
    nb_model     *model;
    nb_optimizer *optim;
    nb_schedule  *schedule;
    nb_rng       *rng;
    nb_loader    *loader;
} nb_checkpoint;

/* Write c to path with the caller's metadata pairs meta_kv[2i] = key,
 * meta_kv[2i+1] = value (nmeta pairs; keys "model", "config", "format" and
 * those starting with "nabla." are reserved). Errors: NB_ERR_ARG (NULL model
 * or optimizer, an optimizer of another model, a reserved key), NB_ERR_IO
 * (the old file at path is then untouched), NB_ERR_NOMEM. */
nb_status nb_checkpoint_save(const char *path, const nb_checkpoint *c, const char *const *meta_kv, int nmeta);

/* Restore c from path. Every object given must match the file (else
 * NB_ERR_STATE naming the difference); objects the file does not hold (a
 * schedule, generator or loader saved as NULL) give NB_ERR_STATE too.
 * NB_ERR_FORMAT for a file that is not a nabla checkpoint or is damaged,
 * NB_ERR_NOTFOUND / NB_ERR_IO from reading it. */
nb_status nb_checkpoint_load(const char *path, const nb_checkpoint *c);

/* The caller's metadata of a checkpoint (or any safetensors file) without
 * loading its tensors: *out from nb_safetensors_load_header, read values with
 * nb_safetensors_meta, free with nb_safetensors_free. NB_ERR_FORMAT when the
 * file is not a nabla checkpoint. */
nb_status nb_checkpoint_open_meta(const char *path, nb_safetensors **out);

#ifdef __cplusplus
}
#endif
#endif
