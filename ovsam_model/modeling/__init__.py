"""The networks of OV-SAM, one module per part (as `segment_anything/modeling/`).

`ovsam.OVSAM` assembles them: the frozen CLIP CNN (`clip_backbone`), the SAM2CLIP adapter
(`sam2clip_adapter`), the FPN over CLIP's levels (`fpn`), and the CLIP2SAM decoder with its
recognition branch (`clip2sam_head`, `region_pooling`). Nothing here knows about files, images of
arbitrary size or vocabularies: see `ovsam_model.build` and `ovsam_model.predictor` for that.
"""
