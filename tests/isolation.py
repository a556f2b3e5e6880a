"""What the bundle tests share: the preamble of a subprocess that must run WITHOUT the platform.

A bundle has to load where only the miner's packages are installed. The subprocess puts a blocker
package first on ``sys.path`` (``args["blocker"]``, a folder whose ``curation`` fails to import)
and records whether ``import curation`` failed, so a test can assert the bundle never needed it.
"""

BLOCK_PLATFORM = """
import importlib.util, io, json, sys
args = json.loads(sys.argv[1])
sys.path.insert(0, args["blocker"])
try:
    import curation
    blocked = False
except ImportError:
    blocked = True
"""
