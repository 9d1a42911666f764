/* nabla — a deep-learning library in C.
 * One include for everything; each concern has its own header. */
#ifndef NABLA_H
#define NABLA_H
#include "nabla/core.h"
#include "nabla/kernels.h"
#include "nabla/ops.h"
#include "nabla/nn.h"
#include "nabla/optim.h"
#include "nabla/schedule.h"
#include "nabla/io.h"
#include "nabla/data.h"
#include "nabla/image.h"
#include "nabla/plot.h"
#include "nabla/checkpoint.h"
#include "nabla/summary.h"
#include "nabla/dist.h"
#include "nabla/rnn.h"
#include "nabla/seq.h"
#include "nabla/gan.h"
#endif
