"""A separate rclpy process: publishes every message type and serves both services.

Segment answers with one instance per request prompt (prompt_id echoed) and names the text queries
in its message; SetVocabulary reports the size of the explicit class list, or fails on an empty request.
"""
from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from ovsam_ros.srv import Segment, SetVocabulary
from tests.ros import interface_samples as samples


class InterfacePeer(Node):
    def __init__(self) -> None:
        super().__init__("interface_peer")
        self._publishers = {
            topic: (self.create_publisher(msg_type, topic, 10), build)
            for topic, (msg_type, build) in samples.TOPICS.items()
        }
        self.create_timer(0.1, self._publish_all)
        self.create_service(Segment, "segment", self._segment)
        self.create_service(SetVocabulary, "set_vocabulary", self._set_vocabulary)

    def _publish_all(self) -> None:
        for publisher, build in self._publishers.values():
            publisher.publish(build())

    def _segment(self, request: Segment.Request, response: Segment.Response) -> Segment.Response:
        result = samples.instance_mask_array()
        result.instances = []
        for prompt in request.prompts:
            instance = samples.instance_mask()
            instance.prompt_id = prompt.id
            result.instances.append(instance)
        result.image_height, result.image_width = request.image.height, request.image.width
        response.success = True
        response.message = "queries: " + ",".join(request.text_queries)
        response.result = result
        return response

    def _set_vocabulary(self, request: SetVocabulary.Request, response: SetVocabulary.Response):
        if not request.classes and not request.name:
            response.success, response.message, response.size = False, "empty request", 0
        else:
            response.success, response.message = True, request.name or "explicit"
            response.size = len(request.classes)
        return response


def main() -> None:
    rclpy.init()
    node = InterfacePeer()
    print("interface_peer ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
