import os
SHARED_DIR = os.path.join("/mnt", "share")
LOCAL_TEMP_DIR = f"{SHARED_DIR}/tmp"
X = (1, 2, [3, {"a": None}])
LOG_LEVEL = "debug"
