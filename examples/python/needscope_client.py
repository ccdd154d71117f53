#!/usr/bin/env python3
"""needscope from Python: the CRM integration example.

Generates the client stubs from proto/ with grpcio-tools (nothing generated is checked in),
then calls Classify, ClassifyBatch and ClassifyStream against a running server.

    pip install grpcio grpcio-tools          # or: scripts/test-tools.sh, then .venv/bin/python
    needscope serve &                        # listens on 127.0.0.1:50051
    python examples/python/needscope_client.py --target 127.0.0.1:50051

Options: --stubs DIR (where to generate the stubs; default: a temporary directory),
--json (print one JSON summary instead of a readable report), --token (admin bearer token,
for the ReloadModel call shown in reload_model()).
"""

import argparse
import importlib
import json
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(REPO, "proto")
PROTOS = ["needscope/v1/needscope.proto", "google/rpc/status.proto"]


def generate_stubs(out_dir):
    """Runs protoc (bundled with grpcio-tools) on proto/ into out_dir and imports the result."""
    from grpc_tools import protoc
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    os.makedirs(out_dir, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + ", ".join(PROTOS))
    sys.path.insert(0, out_dir)
    importlib.invalidate_caches()
    pb = importlib.import_module("needscope.v1.needscope_pb2")
    rpc = importlib.import_module("needscope.v1.needscope_pb2_grpc")
    return pb, rpc


def code_name(code):
    import grpc

    for c in grpc.StatusCode:
        if c.value[0] == code:
            return c.name
    return str(code)


def summarize(pb, c):
    """The four labels of a Classification, as enum names."""
    return {
        "need_level": pb.NeedLevel.Name(c.need_level),
        "explicitness": pb.Explicitness.Name(c.explicitness),
        "tier": pb.ExpectationTier.Name(c.tier),
        "gap": pb.ExpectationGap.Name(c.gap),
        "uncertain": [
            name
            for name, d in (
                ("need", c.need_level_detail),
                ("explicitness", c.explicitness_detail),
                ("tier", c.tier_detail),
                ("gap", c.gap_detail),
            )
            if d.uncertain
        ],
        "language": pb.Language.Name(c.language),
        "model_version": c.model_version,
    }


def classify(stub, pb):
    """One statement, with an explanation of the need level."""
    r = stub.Classify(
        pb.ClassifyRequest(id="crm-1001", text="我们是老客户了，续约价格却比新客户还高", explain=True),
        timeout=10,
    )
    out = {"id": r.id, **summarize(pb, r.classification)}
    out["top_tokens"] = [t.feature for t in r.classification.contributions[:5]]
    return out


def classify_batch(stub, pb):
    """Several statements in one call; a bad item gets its own error status."""
    r = stub.ClassifyBatch(
        pb.ClassifyBatchRequest(
            items=[
                pb.ClassifyRequest(id="b-1", text="The invoice is wrong again, please fix it."),
                pb.ClassifyRequest(id="b-2", text="   "),
                pb.ClassifyRequest(id="b-3", text="師傅提前一天就裝好了，超出預期"),
            ]
        ),
        timeout=10,
    )
    results = []
    for item in r.results:
        if item.WhichOneof("outcome") == "classification":
            results.append({"id": item.id, **summarize(pb, item.classification)})
        else:
            results.append(
                {"id": item.id, "error_code": code_name(item.error.code), "error": item.error.message}
            )
    return results


def classify_stream(stub, pb):
    """A bulk export: statements go up as a stream, results come back in order."""
    texts = ["快递三天了还没到", "", "Your team understood our goals better than we did", "价格还行，就是包装破了"]

    def requests():
        for i, text in enumerate(texts, start=1):
            yield pb.ClassifyStreamRequest(id=f"s-{i}", text=text)

    results = []
    for r in stub.ClassifyStream(requests(), timeout=30):
        if r.WhichOneof("outcome") == "classification":
            results.append({"id": r.id, "sequence": r.sequence, **summarize(pb, r.classification)})
        else:
            results.append({"id": r.id, "sequence": r.sequence, "error_code": code_name(r.error.code)})
    return results


def reload_model(channel, rpc, pb, token):
    """How an operator reloads the model (not called by default)."""
    admin = rpc.ModelAdminStub(channel)
    metadata = [("authorization", f"Bearer {token}")] if token else []
    return admin.ReloadModel(pb.ReloadModelRequest(), metadata=metadata, timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:50051")
    ap.add_argument("--stubs", help="directory for the generated stubs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--reload", action="store_true", help="also call ModelAdmin/ReloadModel")
    ap.add_argument("--token", default=os.environ.get("NEEDSCOPE_ADMIN_TOKEN"))
    args = ap.parse_args()

    import grpc

    stubs = args.stubs or tempfile.mkdtemp(prefix="needscope-stubs-")
    pb, rpc = generate_stubs(stubs)
    with grpc.insecure_channel(args.target) as channel:
        stub = rpc.NeedsClassifierStub(channel)
        summary = {
            "classify": classify(stub, pb),
            "batch": classify_batch(stub, pb),
            "stream": classify_stream(stub, pb),
        }
        if args.reload:
            r = reload_model(channel, rpc, pb, args.token)
            summary["reload"] = {"previous": r.previous_model_version, "now": r.model_version}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        for name, value in summary.items():
            print(f"== {name}")
            print(json.dumps(value, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
