"""A dependency the Python sample app installs from a wheel the tests build."""


def hello(who: str) -> str:
    return f"Hello, {who}, from greeting 1.0"
