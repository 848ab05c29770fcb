
import warnings

# asyncssh (pinned) still imports cryptography's DSA classes, which cryptography 51 deprecates with a
# warning at import: nothing a user of `teresa` can act on, so it must not reach their terminal.
warnings.filterwarnings("ignore", message="DSA is deprecated", module="asyncssh")
