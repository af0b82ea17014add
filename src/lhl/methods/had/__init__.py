"""HAD (Heterogeneity-Aware Distillation) for lifelong heterogeneous dense prediction, as one package.

Loss
----
``L = L_new + new * sum_k (DB_k + SG_k) / 2`` over the old tasks k, each against the frozen
teacher's pseudo-label (semantic: argmax; depth and normals: the teacher output).

* **DB** (distribution balance). Semantic: class-wise geometric mean G_c of the per-pixel NLL,
  weighted by the detached ``softmax(-G)``. Depth / normals: the pixels split into two value
  groups at ``num_interval`` (0.5) and the group means combined. ``num_interval == 1`` replaces DB
  by the plain pseudo-label loss (the release's convention, kept: it is the "without DB" ablation).
* **SG** (salience guidance). The Sobel magnitude of the detached per-pixel loss map, min-max
  normalised per image; the loss is taken on the pixels above ``scalar_val`` (0.9) for
  ``sel_max`` 1, below it for 0, in both tails (``<= scalar_val`` or ``>= 1 - scalar_val``) for 2.

Modes
-----
``paper`` computes the paper's equations (per-image groups, geometric means, SG as the mean loss over
the salient pixels, total ``L_new + new/(2(t-1)) sum_j (L_db + L_sg)``: ``losses/had_paper.py``).
``faithful`` computes exactly what the official release computes (github.com/Deexaa/HAD @ 67bb089,
``utility.weight_fit``), quirks included: it is what the paper's numbers came from, it is checked
against the release's own outputs and gradients (``tests/test_had_golden.py``), and the ``paper``
preset selects it. ``fixed`` (the default) mends every quirk; each mend is its own switch under
``method.mends``, ``None`` follows the mode and ``true`` / ``false`` overrides it in faithful or
fixed (``method.mends.full_cosine=false``):

==========================  ==========================================================================
option                      release (faithful)  ->  mended (fixed)
==========================  ==========================================================================
exclude_absent_classes      classes absent from the pseudo-label sit in the DB softmax with G = 0
                            (they take weight)  ->  only present classes are weighted
class_weighted_mean         semantic DB = mean over classes of w_c G_c (the weighted mean divided by
                            the class count, 13 on NYUv2)  ->  sum_c w_c G_c
per_image_depth_mask        depth SG multiplies [B,1,H,W] errors by [B,H,W] masks, i.e. every image's
                            error under every image's mask ([B,B,H,W])  ->  each image its own mask
masked_normal_numerator     normal SG = 1 - (cosine summed over ALL pixels) / (kept count)
                            ->  the numerator sums the kept pixels only
full_cosine                 normal loss 1 - cos/3 (mean over the 3 channels)  ->  1 - cos
mean_of_groups              depth / normal DB = sum of the two group means (an empty group adds 0 for
                            depth, 1 for normals)  ->  mean of the non-empty group means
replicate_padding           Sobel by conv2d with zero padding, so the image border dominates the
                            mask  ->  kornia's Sobel (replicate padding)
group_by_pseudo_label       groups split by the student's value (a target that moves with the
                            prediction)  ->  split by the pseudo-label's value
sg_mean_over_kept           semantic SG = kept-pixel loss summed / ALL pixels (scaled down by the
                            keep fraction)  ->  mean over the kept pixels
count_valid_pixels          denominators count non-zero loss entries (normals: non-zero channel
                            entries) and invalid pixels enter normal means as loss 1
                            ->  denominators count valid pixels, invalid pixels are left out
==========================  ==========================================================================

The last three were found while matching the release. The release's ``td_ba`` (parsed, never
read) has no option here.

Ablation switches
-----------------
Under ``method.ablation``, each with a default equal to what the mode computed before it existed:

==================  ==============================================================================
switch              values (default first)                                         modes
==================  ==============================================================================
db, sg              true | false: the plain pseudo-label loss in that term's place  all
group_mean          geometric | arithmetic: the mean inside a class (faithful /      all
                    fixed: semantic DB's classes; their regression groups are
                    arithmetic as released) or group (paper)
db_weighting        null = the mode's (faithful / fixed: softmax_neg, the release's  all
                    softmax(-G) over semantic classes; paper: uniform over each
                    image's groups) | softmax_neg | uniform | softmax_pos
sg_select           threshold (the Sobel magnitude min-max normalised per image      all
                    above scalar_val; sel_max picks the tail) | top_fraction (the
                    sg_fraction of each image's pixels of highest Sobel magnitude)
                    | soft (SG = the mean of the loss map weighted by the normalised
                    Sobel magnitude, over the pixels the mode counts)
sg_fraction         0.1: top_fraction's share                                       all
bins                2 | n >= 2: value bins of the regression groups                  paper
salience_source     loss | prediction: Sobel of the teacher's label map              paper
weighting           null = the mode's | paper (new/(2(t-1))) | release (new)         all
paradigm            simultaneous | new_decoder_only | old_decoders_only | new_first  all
new_first_steps     null (half the phase) | steps of new_first's first part          all
==================  ==============================================================================

The names that used to sit flat under ``method.`` are refused with their new place
(``method.db`` -> ``method.ablation.db``). Per step and old task the method logs ``had/<task>``
(the term), ``had/<task>/db``, ``had/<task>/sg`` and ``had/<task>/edge_keep`` (fraction of pixels
the edge mask keeps; with ``sg_select=soft`` the mean weight). Its per-pixel loss maps reach the
loss-term diagnostics through ``Method.pixel_loss_maps``.

Layout
------
``options`` (the switches, checked once; ``HADOptions.loss_config()``), ``dispatch`` (the one
choice between the release's and the paper's forms; the functional ``had_loss``), ``method`` (the
registered ``had``). The maths stays in ``lhl.losses`` (``had_parts``, ``had_terms``,
``had_release``, ``had_paper``, ``salience``): pure functions of tensors and a frozen settings
object, which the golden tests and the distillation studies call without a method, and which
another method can reuse; this package owns what a user configures and how it selects the maths.
"""
from lhl.methods.had.dispatch import had_loss, old_task_had
from lhl.methods.had.method import HAD
from lhl.methods.had.options import MODES, Ablation, HADOptions, Mends

__all__ = ["HAD", "HADOptions", "MODES", "Ablation", "Mends", "had_loss", "old_task_had"]
