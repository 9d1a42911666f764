/* nabla/gan.h — the GAN family of the notes (§15): GAN, DCGAN, CGAN, WGAN
 * and CycleGAN on 1x28x28 Fashion-MNIST images, their training steps, and
 * the scores that say how good their samples are.
 *
 * Images: every function here takes and returns images in [0, 1], as the
 * data loader gives them; the networks themselves work in [-1, 1] (a Tanh
 * generator output), and the conversion happens inside.
 *
 * Models are ordinary named nb_model objects ("<variant>_generator",
 * "<variant>_discriminator"; WGAN's is "wgan_critic"), so they save and load
 * with nb_model_save / nb_checkpoint_save and rebuild from a file alone with
 * nb_gan_model_load_file. Every generator maps a latent batch (N, nz) (CGAN:
 * (N, nz + 10), the noise followed by the one-hot label) to (N, 1, 28, 28);
 * CycleGAN's maps (N, 1, 28, 28) to the same shape. Discriminators take
 * (N, 1, 28, 28) (CGAN: (N, 11, 28, 28), the image followed by ten planes
 * that are all ones for the label and zero otherwise) and return logits,
 * never probabilities (BCE is computed with logits, which is the notes'
 * sigmoid + BCE done stably): (N, 1), PatchGAN (N, 1, 5, 5). */
#ifndef NABLA_GAN_H
#define NABLA_GAN_H

#include "core.h"
#include "data.h"
#include "nn.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nb_gan_variant {
    NB_GAN_UNKNOWN = -1,
    NB_GAN_GAN = 0,   /* MLPs, BCE, non-saturating generator loss */
    NB_GAN_DCGAN,     /* Radford et al.: (transposed) strided convolutions, BN */
    NB_GAN_CGAN,      /* DCGAN's models conditioned on the one-hot class label */
    NB_GAN_WGAN,      /* MLP critic, weight clipping, RMSprop, n_critic steps */
    NB_GAN_CYCLEGAN,  /* ResNet generators, PatchGAN, least squares, cycle L1 */
    NB_GAN_VARIANT_COUNT
} nb_gan_variant;

/* "gan", "dcgan", "cgan", "wgan", "cyclegan"; NULL for a bad value. */
const char    *nb_gan_variant_name(nb_gan_variant v);
/* NB_GAN_UNKNOWN (and a message naming the choices) for an unknown name. */
nb_gan_variant nb_gan_variant_from_name(const char *name);

/* ---- models ----------------------------------------------------------------
 * Configurations (NULL or "" = the default in brackets):
 *   gan/wgan_generator  "nz,h1,...,hk" [100,256,512,1024]: Linear layers
 *       with LeakyReLU(0.2) between them, then Linear -> 784, Tanh, reshape.
 *   gan_discriminator, wgan_critic  "h1,...,hk" [512,256]: Flatten,
 *       Linear 784 -> h1, LeakyReLU(0.2), ..., Linear -> 1.
 *   dcgan_generator  "nz,ngf" [100,32]: z as (nz,1,1) -> ConvT 7x7 -> 2ngf x
 *       7x7, BN, ReLU -> ConvT 4x4/2 -> ngf x 14x14, BN, ReLU -> ConvT 4x4/2
 *       -> 1 x 28x28, Tanh.
 *   dcgan_discriminator  "ndf" [32]: Conv 4x4/2 -> ndf x 14x14, LeakyReLU(0.2)
 *       -> Conv 4x4/2 -> 2ndf x 7x7, BN, LeakyReLU(0.2) -> Conv 7x7 -> 1.
 *   cgan_generator "nz,ngf", cgan_discriminator "ndf" [100,32 and 32]: the
 *       DCGAN pair with 10 more input channels, the one-hot label: z and
 *       label as (nz + 10, 1, 1) for G, the image and 10 label planes for D
 *       (a conditional DCGAN).
 *   cyclegan_generator  "ngf,blocks" [16,3]: Conv 7x7 -> ngf, then two
 *       stride-2 3x3 convs (2ngf x 14x14, 4ngf x 7x7), `blocks` residual
 *       blocks (conv 3x3, IN, ReLU, conv 3x3, IN, plus the input), two
 *       stride-2 transposed convs back to 28x28, Conv 7x7 -> 1, Tanh; every
 *       other conv followed by InstanceNorm and ReLU (zero padding where the
 *       paper reflects).
 *   cyclegan_discriminator  "ndf" [32]: the 70x70 PatchGAN scaled to 28x28:
 *       Conv 4x4/2 -> ndf, LeakyReLU(0.2) -> Conv 4x4/2 -> 2ndf, IN, LReLU ->
 *       Conv 4x4/1 pad 1 -> 4ndf, IN, LReLU -> Conv 4x4/1 pad 1 -> 1 x 5x5.
 * Initialisation: MLPs as torch.nn.Linear; DCGAN, CGAN and CycleGAN as their
 * papers: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), biases 0. */
nb_status  nb_gan_model_build(const char *name, const char *config, nb_rng *rng, nb_model **out);
/* Rebuild a model of nb_gan_model_build from a weights or checkpoint file's
 * metadata and load its weights (optimizer state is skipped). */
nb_status  nb_gan_model_load_file(const char *path, nb_model **out);
/* The variant and role of a model built here: NB_GAN_UNKNOWN otherwise.
 * *is_generator (may be NULL) is set to 1 for generators. */
nb_gan_variant nb_gan_model_variant(const nb_model *m, int *is_generator);
/* The latent size a generator expects (without CGAN's 10 label columns);
 * 0 for CycleGAN's (an image to image map) and for anything else. */
int        nb_gan_latent_size(const nb_model *generator);

/* n images from a generator of any variant into out (n x 784 floats in
 * [0, 1]), from noise drawn from ctx's generator (CycleGAN: NB_ERR_ARG, use
 * nb_gan_translate). labels: n classes in [0, 10) for CGAN, ignored (may be
 * NULL) otherwise. Runs in eval mode without autograd (BN uses its running
 * statistics); the model's mode is restored. ctx is reset. */
nb_status  nb_gan_generate(nb_model *generator, nb_ctx *ctx, int64_t n, const int32_t *labels, float *out);
/* A CycleGAN generator applied to n images x (n x 784 in [0, 1]) into out
 * (same size, [0, 1]); eval mode, no autograd. ctx is reset. */
nb_status  nb_gan_translate(nb_model *generator, nb_ctx *ctx, const float *x, int64_t n, float *out);

/* CGAN's input: z (N, nz) with the one-hot labels (N classes in [0, 10))
 * appended as 10 more columns -> (N, nz + 10). An op (NULL on error). */
nb_tensor *nb_gan_condition(nb_ctx *ctx, nb_tensor *z, const int32_t *labels);
/* CGAN's discriminator input: images x (N, C, H, W) with 10 planes per
 * image appended, plane labels[i] all ones and the others zero ->
 * (N, C + 10, H, W). An op (NULL on error). */
nb_tensor *nb_gan_condition_image(nb_ctx *ctx, nb_tensor *x, const int32_t *labels);

/* ---- training ----------------------------------------------------------- */
typedef struct nb_gan_opts {
    nb_gan_variant variant;
    const char *g_config, *d_config; /* NULL: the defaults above (copied) */
    double   lr;               /* 0: 2e-4 (Adam, betas 0.5, 0.999) or WGAN's 5e-5 (RMSprop) */
    int      n_critic;         /* WGAN: critic steps per generator step (5) */
    float    clip;             /* WGAN: critic weights clipped to [-clip, clip] (0.01) */
    float    lambda_cycle;     /* CycleGAN: weight of the cycle L1 (10) */
    float    lambda_identity;  /* CycleGAN: identity L1 weight, times lambda_cycle (0.5) */
    int      pool_size;        /* CycleGAN: image pool per domain (50; 0 = no pool) */
    unsigned domain_a, domain_b; /* CycleGAN: class masks of the two domains (bit k =
                                    class k; sneaker 1<<7 and ankle boot 1<<9) */
    double   lr_d;             /* the discriminator's (critic's) own learning rate; 0: lr */
    float    real_label;       /* GAN, DCGAN, CGAN: D's BCE target for real images (1; 0.9
                                  is one-sided label smoothing, Salimans et al. 2016) */
    float    ema;              /* decay of an exponential moving average of the generator's
                                  weights and buffers, kept in g_ema and used for samples and
                                  scores (0 = none; 0.999 a common value; not CycleGAN) */
    uint64_t seed;             /* initial weights */
} nb_gan_opts;

/* The defaults of a variant, as listed in nb_gan_opts. */
nb_gan_opts nb_gan_defaults(nb_gan_variant v);

typedef struct nb_gan {
    nb_gan_opts   opts;
    nb_model     *g, *d;       /* generator, discriminator (critic); CycleGAN: G_AB (A->B), D_B */
    nb_model     *g2, *d2;     /* CycleGAN: G_BA (B->A), D_A; NULL otherwise */
    nb_optimizer *opt_g, *opt_d, *opt_g2, *opt_d2;
    nb_model     *g_ema;       /* opts.ema > 0: the averaged generator, else NULL */
    int64_t       d_steps, g_steps;
    /* private: CycleGAN's image pools (fakes for D_B and D_A, in [-1, 1]) */
    float        *pool[2];
    int           pool_n[2];
    char          g_config[64], d_config[64];
} nb_gan;

/* The generator to sample and score: g_ema when opts.ema > 0, else g. */
nb_model *nb_gan_sampler(const nb_gan *g);

/* Build the models and their optimizers. NULL opts = defaults of GAN.
 * NB_ERR_ARG for a bad variant, configuration or setting. */
nb_status nb_gan_new(const nb_gan_opts *opts, nb_gan **out);
void      nb_gan_free(nb_gan *g);

typedef struct nb_gan_losses {
    float d_loss;        /* discriminator (critic) loss; CycleGAN: D_A + D_B */
    float g_loss;        /* generator loss (NAN when not updated this step) */
    float d_real, d_fake;/* mean D on real and fake: probabilities (GAN, DCGAN, CGAN),
                            critic scores (WGAN), least-squares outputs (CycleGAN) */
    float wasserstein;   /* WGAN: mean critic(real) - mean critic(fake) before the update */
    float cycle, identity; /* CycleGAN: mean |x - rec| and |x - G(x)|, [-1, 1] scale */
    int   g_updated;     /* 1 when the generator stepped */
} nb_gan_losses;

/* One discriminator (critic) step: D on the real batch and on a fake batch
 * of the same size made by G without autograd (the detached fake: no
 * gradient can reach G), then D's optimizer. real: (N, 1, 28, 28) in [0, 1];
 * labels: N classes for CGAN (else NULL); real_b: CycleGAN's domain-B batch
 * (real is domain A), else NULL. WGAN clips the critic after its step.
 * Losses: BCE(D(real), real_label) + BCE(D(fake), 0); WGAN mean C(fake) - mean
 * C(real); CycleGAN 0.5 (MSE(D(real), 1) + MSE(D(pool(fake)), 0)) per domain.
 * The ctx arena keeps the step's tensors (reset it between batches). */
nb_status nb_gan_step_d(nb_gan *g, nb_ctx *ctx, nb_tensor *real, const int32_t *labels, nb_tensor *real_b,
                        nb_gan_losses *out);
/* One generator step through the frozen discriminator(s)
 * (nb_model_set_requires_grad off, so D's gradients stay untouched, and back
 * on after): non-saturating BCE(D(G(z)), 1); WGAN -mean C(G(z)); CycleGAN
 * MSE(D_B(G_AB(a)), 1) + MSE(D_A(G_BA(b)), 1) + lambda_cycle (L1 cycles) +
 * lambda_cycle lambda_identity (L1(G_AB(b), b) + L1(G_BA(a), a)). The batch
 * size is real's (CGAN: labels are the conditioning classes). With
 * opts.ema > 0 every G step then moves g_ema towards G:
 *   g_ema = d g_ema + (1 - d) G,  d = min(ema, (1 + t) / (10 + t))
 * over the whole state (weights and buffers), t the G steps so far, so the
 * average forgets the initial weights quickly (as TensorFlow's
 * ExponentialMovingAverage with num_updates). */
nb_status nb_gan_step_g(nb_gan *g, nb_ctx *ctx, nb_tensor *real, const int32_t *labels, nb_tensor *real_b,
                        nb_gan_losses *out);
/* One training step on one batch: the D step, then the G step (WGAN: the G
 * step after every n_critic-th critic step). out gets both. When G steps,
 * one G(z) serves both steps, as in PyTorch's DCGAN example (D sees it
 * detached, G back-propagates through it), which saves a generator forward
 * over calling nb_gan_step_d and nb_gan_step_g. */
nb_status nb_gan_step(nb_gan *g, nb_ctx *ctx, nb_tensor *real, const int32_t *labels, nb_tensor *real_b,
                      nb_gan_losses *out);

/* ---- scores ----------------------------------------------------------------
 * Fréchet distance between Gaussians fitted to two feature sets a (na x dim)
 * and b (nb x dim), row-major (covariances with n - 1, as numpy.cov):
 *   |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr(sqrt(sqrt(S_a) S_b sqrt(S_a)))
 * with the matrix square roots from a symmetric (Jacobi) eigendecomposition,
 * negative eigenvalues of the rounding taken as 0. Double precision. Needs
 * na, nb >= 2; NB_ERR_NONFINITE for a NaN or infinite feature. */
nb_status nb_frechet_distance(const float *a, int64_t na, const float *b, int64_t nb, int dim, double *out);

/* Run a classifier (a Sequential, such as the zoo's "cnn") on n images
 * (n x C*H*W floats in [0, 1], shape taken from shape[3] = {C, H, W}) in eval
 * mode without autograd, in batches; features (n x F) gets the input of its
 * last layer (the cnn's 128-unit ReLU output; dropout is off in eval), probs
 * (n x classes) the softmax of its output. Either may be NULL; *nfeat (may
 * be NULL) gets F. ctx is reset. */
nb_status nb_classifier_run(nb_model *classifier, nb_ctx *ctx, const float *images, int64_t n, const int shape[3],
                            float *features, int *nfeat, float *probs, int nclasses);

/* The images of d whose class is in mask (bit k = class k), copied: a new
 * dataset for nb_dataset_free. NB_ERR_ARG when none is left. */
nb_status nb_gan_domain(const nb_dataset *d, unsigned mask, nb_dataset **out);

/* Quality of a GAN as scored by a Fashion-MNIST classifier. */
typedef struct nb_gan_metrics {
    double  fd;            /* Fréchet distance, real test images vs samples (CycleGAN:
                              domain-B test images vs translations of domain A) */
    int64_t hist[10];      /* classes the classifier gives the samples (translations) */
    double  confident;     /* fraction of samples with top probability >= 0.7 */
    double  cond_acc;      /* CGAN: fraction classified as their conditioning class (else NAN) */
    double  target_rate;   /* CycleGAN: fraction of translated test images (both ways) classified
                              into the target domain (else NAN) */
    double  cycle_l1;      /* CycleGAN: mean |x - G_BA(G_AB(x))| (and B->A->B), [0, 1] pixels */
    int64_t n;             /* samples scored */
    /* the classifier on the real images of the Fréchet distance, the level
       the samples are measured against */
    double  real_confident; /* fraction with top probability >= 0.7 */
    double  real_acc;       /* fraction classified as their label */
} nb_gan_metrics;

/* Score g with classifier (as nb_classifier_run, 10 classes, 128-or-any
 * features) against n real images of test (CycleGAN: up to n of each domain
 * from test). Samples use ctx's generator; CGAN's are n / 10 per class.
 * ctx is reset. */
nb_status nb_gan_evaluate(nb_gan *g, nb_model *classifier, nb_ctx *ctx, const nb_dataset *test, int64_t n,
                          nb_gan_metrics *out);

#ifdef __cplusplus
}
#endif
#endif
