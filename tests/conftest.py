"""Shared test setup: never touch the user's cache, never open a plot window; one torch thread
for in-process training; a fake GCS."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory):
    # session scope, so module-scoped fixtures (and the subprocesses they start) see it too
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FER_SEARCH_CACHE", str(tmp_path_factory.mktemp("fer-search-cache")))
        patch.setenv("MPLBACKEND", "Agg")
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's in-process training: two OpenMP threads on a busy 2-core
    runner spin against each other (an epoch of the tiny test nets took 5-9 s instead of
    0.3 s). The setting is restored for the rest of the session."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def token_gcs():
    """A stand-in for a Ray GCS with token authentication: its GetClusterId answers only the
    bearer 'right-token'. Yields its HOST:PORT."""
    grpc = pytest.importorskip("grpc")
    from concurrent import futures

    def handle(request, context):
        if dict(context.invocation_metadata()).get("authorization") != "Bearer right-token":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "InvalidAuthToken")
        return b""

    handler = grpc.method_handlers_generic_handler(
        "ray.rpc.NodeInfoGcsService", {"GetClusterId": grpc.unary_unary_rpc_method_handler(handle)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)
