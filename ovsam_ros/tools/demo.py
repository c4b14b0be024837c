"""The main job: ovsam_node on the shipped model, a built-in camera and a scripted operator.

`./scripts/demo` (or `.venv/bin/python -m ovsam_ros.tools.demo`) starts the node as its own process,
publishes the synthetic moving world as a camera, and plays an operator who clicks objects, sends
boxes, tracks one object and types a text query. Every answer is checked against the world's
truth (mask IoU, label) and timed; overlay pictures are written to --out.

With `--two-cameras` the node serves a front and a rear camera (`cameras: [front, rear]`), each showing
its own world: the operator works on the front camera's topics as above, and also boxes every object
of the rear camera's scene, answered on `rear/instances` and checked against the rear world's truth.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ovsam_model.instances import InstancePrediction
from ovsam_model.mask_box import masks_to_boxes
from ovsam_model.mask_iou import mask_pair_iou
from ovsam_model.prompts import PromptSpec
from ovsam_model.synthetic.classes import CLASS_NAMES
from ovsam_model.synthetic.motion import ASKABLE_MIN_PIXELS, MovingWorld
from ovsam_model.synthetic.prompts import mask_centre_point
from ovsam_model.visualization import draw_instances
from ovsam_ros.tools.harness import NodeExited, NodeProcess, ToolClient


@dataclass
class Check:
    kind: str
    prompt_id: str
    truth: str
    label: str = ""
    score: float = 0.0
    iou: float = 0.0
    latency_ms: float = 0.0
    track_id: int = 0
    failure: str = ""
    frame: int = -1  # the world's frame the prompt was asked on (which frames depends on start-up time)


def mask_from_instance(instance, height: int, width: int) -> np.ndarray:
    full = np.zeros((height, width), dtype=bool)
    roi, mask = instance.roi, instance.mask
    crop = np.frombuffer(mask.data, np.uint8).reshape(mask.height, mask.step)[:, : mask.width] > 0
    full[roi.y_offset: roi.y_offset + roi.height, roi.x_offset: roi.x_offset + roi.width] = crop
    return full


def as_prediction(instance, height: int, width: int) -> InstancePrediction:
    """An InstanceMask message as the library's prediction, for ovsam_model.visualization."""
    roi = instance.roi
    box = (int(roi.x_offset), int(roi.y_offset), int(roi.x_offset + roi.width), int(roi.y_offset + roi.height))
    label = instance.label + (f" #{instance.id}" if instance.id else "")
    return InstancePrediction(prompt_id=instance.prompt_id, mask=mask_from_instance(instance, height, width),
                              mask_score=float(instance.mask_score), box=box, class_index=int(instance.class_index),
                              label=label, score=float(instance.score))


def draw(image: np.ndarray, instances, height: int, width: int, prompts: Sequence[PromptSpec] = ()) -> np.ndarray:
    """The answer's masks and labels, with the prompts that asked for them (the library's overlay)."""
    return draw_instances(image, [as_prediction(i, height, width) for i in instances], prompts=prompts)


CAPTION_HEIGHT = 28  # pixels of the caption bar above each panel of `asked_and_answered`
PANEL_GAP = 8        # pixels of white between its two panels


def asked_and_answered(image: np.ndarray, prompt: PromptSpec, answer: np.ndarray, asked: str,
                       answered: str) -> np.ndarray:
    """Two panels side by side, each captioned: the frame with the prompt drawn (what was asked) and
    the mask with its label (what came back), so a person sees both at a glance."""
    panels = []
    for picture, text in ((draw_instances(image, [], prompts=[prompt]), asked), (answer, answered)):
        bar = np.full((CAPTION_HEIGHT, picture.shape[1], 3), 32, np.uint8)
        cv2.putText(bar, text, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(np.vstack([bar, picture]))
    gap = np.full((panels[0].shape[0], PANEL_GAP, 3), 255, np.uint8)
    return np.hstack([panels[0], gap, panels[1]])


def run_demo(args: argparse.Namespace) -> int:
    from std_msgs.msg import String

    from ovsam_ros.msg import InstanceMaskArray, Prompt, PromptArray
    from ovsam_ros.tools.camera_publisher import CameraPublisher
    from ovsam_ros.tools.image_sources import world_frames

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parameters = {"image_qos": "reliable", "model": args.model, "device": args.device, "text_rate_hz": 0.5}
    front = "front" if args.two_cameras else ""
    if args.two_cameras:
        parameters["cameras"] = "[front, rear]"
        # The rear boxes are stamped with a frame that must still be buffered when their turn comes
        # after the front camera's work: on a slow CPU that can be more than 8 frames later.
        parameters["frame_buffer_size"] = 32

    def topic(name: str) -> str:
        return f"{front}/{name}" if front else name

    if args.weights:
        parameters["weights_dir"] = args.weights
    log_path = out / "node.log"
    print(f"[demo] starting ovsam_node ({args.model}); its log: {log_path}")
    node_process = NodeProcess(parameters, log_path=log_path)
    operator = ToolClient("ovsam_demo_operator", node_process)
    client = operator.node
    prompts_pub = client.create_publisher(PromptArray, topic("prompts"), 10)
    text_pub = client.create_publisher(String, topic("text_query"), 10)
    results: list[tuple[float, InstanceMaskArray]] = []
    client.create_subscription(InstanceMaskArray, topic("instances"), lambda m: results.append((time.monotonic(), m)),
                               50)

    world = MovingWorld(seed=args.seed, size=args.width, height=args.height, num_objects=args.objects,
                        speed=args.speed)
    scenes: dict[int, object] = {}
    frame_numbers: dict[int, int] = {}

    def numbered_frames():
        for number, (image, scene) in enumerate(world_frames(world)):
            yield image, (number, scene)

    def remember(stamp_ns: int, numbered: tuple[int, object]) -> None:
        frame_numbers[stamp_ns], scenes[stamp_ns] = numbered
        for old in sorted(scenes)[:-60]:
            del scenes[old], frame_numbers[old]

    camera = CameraPublisher(client, reliable=True, camera=front)
    camera.stream(numbered_frames(), args.rate, on_published=remember)
    rear = RearCamera(client, args) if args.two_cameras else None

    def spin_until(condition, timeout: float) -> bool:
        try:
            return operator.spin_until(condition, timeout)
        except NodeExited:
            return False

    checks: list[Check] = []
    try:
        if not spin_until(lambda: prompts_pub.get_subscription_count() > 0 and
                          camera.image_pub.get_subscription_count() > 0, args.startup_timeout):
            print(f"[demo] the node did not come up; see {log_path}:\n" + node_process.log_tail())
            return 1
        spin_until(lambda: False, 1.0)  # a few frames into the node's buffer
        print(f"[demo] node up; camera at {args.rate:g} Hz, {args.width}x{args.height}, "
              f"objects: {', '.join(CLASS_NAMES[o.label] for o in world.objects)}")

        # -- clicks and boxes on stamped frames -------------------------------------------------
        for round_index in range(args.prompts):
            stamp_ns = max(scenes)
            scene = scenes[stamp_ns]
            visible = world.askable(frame_numbers[stamp_ns], scene.instance_map)
            if not visible:
                continue
            target = visible[round_index % len(visible)]
            truth_mask = scene.instance_map == target + 1
            kind = "click" if round_index % 2 == 0 else "box"
            prompt = Prompt(id=f"{kind}-{round_index}")
            prompt.header.stamp.sec, prompt.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            if kind == "click":
                from geometry_msgs.msg import Point

                x, y = mask_centre_point(truth_mask)
                prompt.points = [Point(x=float(x), y=float(y))]
                asked = PromptSpec(prompt.id, points=[[x, y]])
                question = f"asked: click at ({x:.0f}, {y:.0f}) on a {CLASS_NAMES[int(scene.labels[target])]}"
            else:
                prompt.box = [float(v) for v in masks_to_boxes(truth_mask[None])[0]]
                asked = PromptSpec(prompt.id, box=list(prompt.box))
                question = f"asked: box around a {CLASS_NAMES[int(scene.labels[target])]}"
            sent = time.monotonic()
            seen = len(results)
            prompts_pub.publish(PromptArray(prompts=[prompt]))
            check = Check(kind, prompt.id, CLASS_NAMES[int(scene.labels[target])],
                          frame=frame_numbers[stamp_ns])
            answered = spin_until(lambda: any(_answer_for(m, prompt.id) for _, m in results[seen:]),
                                  args.answer_timeout)
            if not answered:
                check.failure = "no answer in time"
            else:
                received, msg = next((t, m) for t, m in results[seen:] if _answer_for(m, prompt.id))
                check.latency_ms = (received - sent) * 1e3
                instance = _answer_for(msg, prompt.id)
                if isinstance(instance, str):
                    check.failure = instance
                else:
                    check.label, check.score = instance.label, instance.score
                    answer = mask_from_instance(instance, msg.image_height, msg.image_width)
                    check.iou = mask_pair_iou(answer, truth_mask)
                    verdict = "right" if check.label == check.truth else "WRONG"
                    picture = asked_and_answered(
                        scene.image, asked, draw(scene.image, [instance], msg.image_height, msg.image_width, [asked]),
                        question, f"answered: {check.label} {check.score:.2f} ({verdict}), mask IoU {check.iou:.2f}")
                    cv2.imwrite(str(out / f"{prompt.id}.png"), picture[..., ::-1])
            checks.append(check)
            print(f"[demo] {check.kind:5s} {check.prompt_id:8s} frame {check.frame:3d} truth={check.truth:16s} -> "
                  f"{(check.label or check.failure):16s} score={check.score:.2f} IoU={check.iou:.2f} "
                  f"{check.latency_ms:7.0f} ms")

        # -- tracking ---------------------------------------------------------------------------
        stamp_ns = max(scenes)
        scene = scenes[stamp_ns]
        target = scene.most_visible_object()
        track_prompt = Prompt(id="track-0", track=True,
                              box=[float(v) for v in scene.boxes[target]])
        track_prompt.header.stamp.sec, track_prompt.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        seen = len(results)
        prompts_pub.publish(PromptArray(prompts=[track_prompt]))
        spin_until(lambda: False, args.track_seconds)
        track_ids, track_ious, track_named_right = set(), [], 0
        for _, msg in results[seen:]:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            for instance in msg.instances:
                if instance.prompt_id == "track-0" and stamp in scenes:
                    track_ids.add(instance.id)
                    truth = scenes[stamp].instance_map == target + 1
                    answer = mask_from_instance(instance, msg.image_height, msg.image_width)
                    track_ious.append(mask_pair_iou(answer, truth))
                    track_named_right += instance.label == CLASS_NAMES[int(scene.labels[target])]
        print(f"[demo] track  {CLASS_NAMES[int(scene.labels[target])]}: {len(track_ious)} frames, "
              f"ids {sorted(track_ids)}, "
              f"mean IoU {np.mean(track_ious) if track_ious else 0:.2f}, "
              f"named right on {track_named_right}/{len(track_ious)} frames")
        checks.append(Check("track", "track-0", CLASS_NAMES[int(scene.labels[target])],
                            iou=float(np.mean(track_ious)) if track_ious else 0.0,
                            track_id=len(track_ids), failure="" if track_ious else "no tracked frames"))

        # -- text query -------------------------------------------------------------------------
        present = sorted({CLASS_NAMES[int(label)] for label in scene.labels})
        query = present[:2] + ["white cross" if "white cross" not in present else "green star"]
        seen = len(results)
        text_pub.publish(String(data=", ".join(query)))
        got = spin_until(lambda: any(not i.prompt_id for _, m in results[seen:] for i in m.instances),
                         args.answer_timeout)
        text_pub.publish(String(data=""))
        if got:
            received, msg = next((t, m) for t, m in results[seen:] if any(not i.prompt_id for i in m.instances))
            found = [i for i in msg.instances if not i.prompt_id]
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            truth_scene = scenes.get(stamp, scene)
            truth_present = {CLASS_NAMES[int(label)] for label in truth_scene.labels}
            correct = sum(1 for i in found if i.label in truth_present)
            print(f"[demo] text  '{', '.join(query)}': {len(found)} instances "
                  f"({', '.join(f'{i.label} {i.score:.2f}' for i in found)}), "
                  f"{correct} of a class present in the frame")
            cv2.imwrite(str(out / "text_query.png"),
                        draw(truth_scene.image, found, msg.image_height, msg.image_width)[..., ::-1])
        else:
            print("[demo] text query: no instances in time")

        prompted = [c for c in checks if c.kind in ("click", "box")]
        answered = [c for c in prompted if not c.failure]
        if answered:
            print(f"\n[demo] {len(answered)}/{len(prompted)} prompts answered with a mask; "
                  f"label accuracy {np.mean([c.label == c.truth for c in answered]):.2f}; "
                  f"mean IoU {np.mean([c.iou for c in answered]):.2f}; "
                  f"latency p50 {np.median([c.latency_ms for c in answered]):.0f} ms")
        rear_missing = rear.check(spin_until, args.answer_timeout) if rear is not None else []
        print(f"[demo] overlay pictures in {out}/")
        # The main job fails loudly when the pipeline did not answer: a prompt or the track without a
        # mask, nothing asked at all, or the node gone. Wrong labels are the model's, not a failure.
        problems = [f"{c.prompt_id}: {c.failure}" for c in checks if c.failure] + rear_missing
        if not prompted:
            problems.append("no object was visible enough to ask about")
        if not node_process.alive():
            problems.append(f"the node exited; see {log_path}")
        if problems:
            print("[demo] FAILED: " + "; ".join(problems))
            return 1
        return 0
    finally:
        operator.close()
        node_process.stop()


class RearCamera:
    """The second camera of --two-cameras: its own world on rear/image, and boxes on its objects."""

    def __init__(self, client, args: argparse.Namespace) -> None:
        from ovsam_ros.msg import InstanceMaskArray, PromptArray
        from ovsam_ros.tools.camera_publisher import CameraPublisher
        from ovsam_ros.tools.image_sources import world_frames

        self.world = MovingWorld(seed=args.seed + 1, size=args.width, height=args.height, num_objects=args.objects,
                                 speed=args.speed)
        self.scenes: dict[int, object] = {}
        self.results: list[InstanceMaskArray] = []
        self.prompts_pub = client.create_publisher(PromptArray, "rear/prompts", 10)
        client.create_subscription(InstanceMaskArray, "rear/instances", self.results.append, 50)
        self.camera = CameraPublisher(client, reliable=True, camera="rear", frame_id="rear_camera")
        self.camera.stream(world_frames(self.world), args.rate, on_published=self._remember)

    def _remember(self, stamp_ns: int, scene: object) -> None:
        self.scenes[stamp_ns] = scene
        for old in sorted(self.scenes)[:-60]:
            del self.scenes[old]

    def check(self, spin_until, timeout: float) -> list[str]:
        """Boxes every object of the rear scene; returns '<prompt id>: <why>' for each without a mask."""
        from ovsam_ros.msg import Prompt, PromptArray

        stamp_ns = max(self.scenes)
        scene: Any = self.scenes[stamp_ns]
        prompts, truth = [], {}
        for index in range(len(scene.labels)):
            mask = scene.instance_map == index + 1
            if mask.sum() < ASKABLE_MIN_PIXELS:
                continue
            prompt = Prompt(id=f"rear-box-{index}", box=[float(v) for v in masks_to_boxes(mask[None])[0]])
            prompt.header.stamp.sec, prompt.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            prompts.append(prompt)
            truth[prompt.id] = (mask, CLASS_NAMES[int(scene.labels[index])])
        self.prompts_pub.publish(PromptArray(prompts=prompts))
        spin_until(lambda: all(any(_answer_for(m, p) for m in self.results) for p in truth), timeout)
        ious, right, missing = [], 0, []
        for prompt_id, (mask, label) in truth.items():
            msg = next((m for m in self.results if _answer_for(m, prompt_id)), None)
            instance = _answer_for(msg, prompt_id) if msg is not None else "no answer in time"
            if isinstance(instance, str):
                print(f"[demo] rear  {prompt_id}: {instance}")
                missing.append(f"{prompt_id}: {instance}")
                continue
            ious.append(mask_pair_iou(mask_from_instance(instance, msg.image_height, msg.image_width), mask))
            right += instance.label == label
            print(f"[demo] rear  {prompt_id:12s} truth={label:16s} -> {instance.label:16s} IoU={ious[-1]:.2f}")
        print(f"[demo] rear camera: {len(ious)}/{len(truth)} boxes answered on rear/instances, "
              f"mean IoU {np.mean(ious) if ious else 0:.2f}, labels {right}/{len(ious)}")
        return missing


def _answer_for(msg, prompt_id: str):
    for instance in msg.instances:
        if instance.prompt_id == prompt_id:
            return instance
    for failed_id, reason in zip(msg.failed_prompt_ids, msg.failure_reasons):
        if failed_id == prompt_id:
            return reason
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovsam demo", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ovsam-shapes")
    parser.add_argument("--weights", default="", help="weights directory (default: the shipped weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rate", type=float, default=5.0, help="camera frames per second")
    parser.add_argument("--width", type=int, default=640, help="camera frame width (default 640)")
    parser.add_argument("--height", type=int, default=480, help="camera frame height (default 480)")
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--speed", type=float, default=1.0, help="object speed, pixels per frame")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--prompts", type=int, default=8, help="clicks and boxes to send")
    parser.add_argument("--track-seconds", type=float, default=4.0)
    parser.add_argument("--answer-timeout", type=float, default=30.0)
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--two-cameras", action="store_true",
                        help="one node for a front and a rear camera (cameras: [front, rear]), each its own world")
    return run_demo(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
