"""Developer tools around the node: the demo, benchmarks, the soak, and a camera publisher.

They start the node as a process and talk to it over ROS; the node itself imports nothing from here.
"""
