"""Training of the shipped `ovsam-shapes` model, stage by stage, as in the paper but in miniature.

Stages (each a module, each resumable, each writing its result under the run directory):
  clip      - a small CLIP trained contrastively on whole scenes and alt-text captions of base classes;
  teacher   - a small SAM (ViT encoder, prompt encoder, mask decoder) for promptable segmentation;
  distill   - SAM2CLIP: the adapter on the frozen CLIP, regressed onto the teacher's embedding;
  clip2sam  - the decoder, FPN and RoI recognition, with the paper's losses;
  recognition - the FPN and RoI projection again, from a fresh start, on CLIP features computed once
                for the flips and quarter turns of every scene (the paper's CE, trained apart).
"""
