"""A git session holds its thread for the whole push; deploys must still get the loop's worker threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.gitreceiver.conftest import WEB_APP, Deploy


def test_a_push_deploys_while_sessions_outnumber_the_default_executor(deploy: Deploy) -> None:
    # One default worker: a session running there would leave none for the deploy's database and storage calls.
    deploy.server.loop.call_soon_threadsafe(deploy.server.loop.set_default_executor, ThreadPoolExecutor(1))
    deploy.git.commit(WEB_APP)
    push = deploy.git.git("push", deploy.git.remote("shop"), "main", check=False, timeout=90)
    assert push.returncode == 0, push.stderr
    assert deploy.get() == (200, "version one\n")
