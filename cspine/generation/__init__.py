"""Image generation shared by the stages: the shipped pipeline class, reproducible sampling, the shape model, seeds.

Part of the shared core (../shared/DESIGN.md: what stages share beyond the core lives in the core, and a stage
never imports another stage's internals). `cspine train` fits the shape model and exports the pipeline,
`cspine sample` draws the released images, `cspine evaluate` redraws images of every checkpoint and sampler
for its curves, and the benchmarks time the same code, so none of them reaches into another stage:

- :mod:`.hub_pipeline`: the conditional pipeline class, the landmark-layout renderer and the guided step; the
  one file that ships to the Hub as ``pipeline.py`` (it imports only torch, numpy and diffusers);
- :mod:`.sampling`: image ``i`` from ``(seed, i)``: U-Net and scheduler loading, batched generation;
- :mod:`.shape_model`: the per-class statistical shape model the layouts are drawn from;
- :mod:`.seeds`: the one formula naming every random stream of training and sampling.
"""
