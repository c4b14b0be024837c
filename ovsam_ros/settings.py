"""The node's parameters: names, defaults, descriptions and validation in one table.

config/ovsam.yaml mirrors these defaults; the node declares them from here, so the two cannot drift
without the parameter test noticing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

from ovsam_model.runtime_choices import BACKEND_NAMES, DEVICES, PRECISIONS

from .depth_geometry import GeometrySettings

IMAGE_QOS = ("sensor_data", "reliable")
# A camera's name is one segment of its topics' names (`front/image`).
CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

# Parameters that take effect while the node runs; the others are read when the node configures.
RUNTIME_PARAMETERS = ("vocabulary", "score_threshold", "max_instances", "top_k", "text_rate_hz", "publish_overlay",
                      "max_prompt_wait_s", "future_stamp_wait_s")


@dataclass
class NodeSettings:
    model: str = "ovsam-shapes"
    weights_dir: str = ""            # empty = the shipped weights of `model`
    device: str = "auto"
    backend: str = "torch"
    precision: str = "fp32"
    inference_process: bool = True   # the model in a child process: message handling never waits on its GIL
    inference_timeout_s: float = 300.0  # a model call running longer is taken as hung: the child is restarted
    inference_server: str = ""       # empty = the local model; else a Triton server's host:port (HTTP)
    inference_server_timeout_s: float = 10.0  # one call to the server answering later fails its prompts
    vocabulary: str = ""             # empty or "default" = the model's own; "lvis", "coco" or a class file
    vocabulary_dirs: str = ""        # os.pathsep-separated directories SetVocabulary may read files from
    score_threshold: float = 0.0     # text-query instances below this label probability are not published
    max_instances: int = 50
    top_k: int = 5
    frame_buffer_size: int = 8
    feature_cache_size: int = 4
    text_rate_hz: float = 1.0
    publish_overlay: bool = True
    image_qos: str = "sensor_data"
    use_compressed: bool = False
    max_pending_prompts: int = 1000
    max_prompt_wait_s: float = 2.0
    # A prompt stamped with a frame not yet received waits this long for it (a small prompt message
    # overtakes a 640x480 image through DDS by ~14 ms); below max_prompt_wait_s.
    future_stamp_wait_s: float = 0.5
    service_timeout_s: float = 60.0
    track_lost_after: int = 3
    camera_timeout_s: float = 2.0
    depth_stamp_tolerance_s: float = 0.02
    depth_min_m: float = 0.1
    depth_max_m: float = 10.0
    depth_trim: str = "cluster"
    depth_cluster_gap_m: float = 0.05
    depth_min_points: int = 10
    box_orientation: str = "upright"
    # Names of the cameras this node serves, each with its topics under its name; empty = one camera
    # with the topics unprefixed. Not in config/ovsam.yaml's defaults: a ROS parameter file cannot
    # state an empty list.
    cameras: list[str] = field(default_factory=list)

    def geometry(self) -> GeometrySettings:
        """The 3D geometry settings these parameters describe."""
        return GeometrySettings(min_depth_m=self.depth_min_m, max_depth_m=self.depth_max_m, trim=self.depth_trim,
                                cluster_gap_m=self.depth_cluster_gap_m, min_points=self.depth_min_points,
                                box_orientation=self.box_orientation)

    def validate(self) -> None:
        """Raise ValueError naming the parameter and its allowed values."""
        choices = {"device": DEVICES, "backend": BACKEND_NAMES, "precision": PRECISIONS, "image_qos": IMAGE_QOS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"parameter '{name}' is '{getattr(self, name)}'; allowed: {', '.join(allowed)}")
        positive = ("max_instances", "top_k", "frame_buffer_size", "feature_cache_size", "max_pending_prompts",
                    "track_lost_after")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"parameter '{name}' must be at least 1, got {getattr(self, name)}")
        for name in ("text_rate_hz", "max_prompt_wait_s", "service_timeout_s", "inference_timeout_s",
                     "inference_server_timeout_s",
                     "camera_timeout_s",
                     "depth_stamp_tolerance_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"parameter '{name}' must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.future_stamp_wait_s < self.max_prompt_wait_s:
            raise ValueError(f"parameter 'future_stamp_wait_s' must lie in [0, max_prompt_wait_s "
                             f"{self.max_prompt_wait_s:g}), got {self.future_stamp_wait_s}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"parameter 'score_threshold' must lie in [0, 1], got {self.score_threshold}")
        for name in self.cameras:
            if not CAMERA_NAME.fullmatch(name):
                raise ValueError(f"parameter 'cameras': '{name}' is not a camera name (a letter, then letters, "
                                 "digits or '_')")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"parameter 'cameras' names a camera twice: {self.cameras}")
        try:
            self.geometry().validate()
        except ValueError as error:
            raise ValueError(f"3D parameters (depth_*, box_orientation): {error}") from None


DESCRIPTIONS = {
    "model": "model configuration: ovsam-shapes (shipped) or ovsam-rn50x16 (released weights)",
    "weights_dir": "directory with the model's weight files; empty = the shipped weights",
    "device": "auto | cpu | cuda",
    "backend": "torch | onnxruntime | tensorrt",
    "precision": "fp32 | fp16 | bf16 (GPU)",
    "inference_process": "run the model in a child process so that message handling never competes with it "
                         "for Python's GIL; false runs it on a thread of the node process",
    "inference_timeout_s": "with inference_process: a model call that runs longer is taken as hung; its prompts "
                           "fail and the child process is restarted (allow for the slowest call, e.g. a text query "
                           "with the full-size model on a CPU)",
    "inference_server": "empty = run the model here; else the address (host:port) of a Triton Inference Server "
                        "serving `ovsam-model triton-repo`'s repository for the same model: the image and prompt "
                        "halves run there, preprocessing, masks and labels here (docs/triton.md)",
    "inference_server_timeout_s": "with inference_server: a call the server has not answered by then fails its "
                                  "prompts (the next call reconnects)",
    "vocabulary": "empty or default = the model's own; lvis, coco, or a file with one class per line "
                  "(looked up in vocabulary_dirs; at start-up also a path elsewhere)",
    "vocabulary_dirs": "directories (separated by ':') from which the set_vocabulary service may read class files",
    "score_threshold": "text-query instances below this label probability are not published",
    "max_instances": "most instances published per text query",
    "top_k": "classes listed per instance in top_labels",
    "frame_buffer_size": "recent frames kept for stamped prompts",
    "feature_cache_size": "recent frames whose image features are kept, per camera",
    "text_rate_hz": "how often the standing text query runs on the newest frame",
    "publish_overlay": "draw the overlay image while someone subscribes",
    "image_qos": "sensor_data (best effort) | reliable",
    "use_compressed": "subscribe to image/compressed instead of image",
    "max_pending_prompts": "prompts queued beyond this are answered with an 'overloaded' failure",
    "max_prompt_wait_s": "a prompt still queued after this long is answered 'overloaded' instead of segmented "
                         "(bounds latency under load)",
    "future_stamp_wait_s": "a prompt stamped with a frame that has not arrived yet (newer than every buffered "
                           "frame) waits this long for it before it is answered 'no buffered frame with stamp'; "
                           "0 fails it at once (like message_filters' synchronizer queue: the prompt message can "
                           "overtake its image); must be below max_prompt_wait_s",
    "service_timeout_s": "longest a segment or set_vocabulary call waits for the inference thread",
    "track_lost_after": "consecutive misses after which a track is dropped",
    "camera_timeout_s": "diagnostics warn when no image arrived for this long",
    "depth_stamp_tolerance_s": "largest stamp difference for pairing depth with colour",
    "depth_min_m": "depth below this is invalid (the sensor's blind zone)",
    "depth_max_m": "depth beyond this is invalid (far noise)",
    "depth_trim": "cluster: keep each instance's largest depth cluster | percentile: keep the 2nd-98th percentile",
    "depth_cluster_gap_m": "an empty depth band this wide separates an object from what is behind it",
    "depth_min_points": "fewest valid depth pixels an instance needs for a 3D answer",
    "cameras": "names of the cameras one node serves with one model (e.g. [front, rear]): camera c's topics are "
               "c/image, c/prompts, c/instances, ...; empty = one camera, topics without a prefix",
    "box_orientation": "upright: 3D boxes turn about the camera's up axis only | pca: full principal axes",
}

PARAMETER_NAMES = tuple(f.name for f in fields(NodeSettings))
