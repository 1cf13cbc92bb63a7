"""Quality evaluation of a run's synthetic images (`cspine evaluate`, writes eval/).

Modules: inception (the bundled FID Inception-v3), data (image sets from data/ and samples/), features
(cached Inception features), metrics (FID/KID via torchmetrics, precision/recall, MS-SSIM diversity),
radiomics (FRD), curves (checkpoint and sampler speed-quality curves), report (figures, summary.md),
evaluate (the stage), cli (the subcommand).
"""
