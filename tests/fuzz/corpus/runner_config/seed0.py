"""runner config"""
from kohakuengine import Config

RUNNER_BIND_IP = "0.0.0.0"
RUNNER_PORT = 8001
HOST_ADDRESS = "10.0.0.1"
HOST_PORT = 8000
SHARED_DIR = "/mnt/cluster-share"
ADDITIONAL_MOUNTS = ["/a:/b:ro", "/c:/d"]
TUNNEL_ENABLED = True
HEARTBEAT_INTERVAL_SECONDS = 5

def config_gen():
    return Config.from_globals()
