"""Local AWS data plane: ingestion, ``Retrieve`` at 1k and 50k chunks, ``Converse`` single vs 8 concurrent.

Everything goes through the local AWS's own code, served in this process (``localaws.server.LocalAWS``: moto
behind our front door on a free 127.0.0.1 port) and called over HTTP with real boto3 clients:

- ingestion: product documents generated from the sample catalog (each product renamed per copy, its numbers
  shifted) are put under the data source's prefix and ingested by ``StartIngestionJob``, polled with
  ``GetIngestionJob`` until COMPLETE. Baseline: the embedder alone (``localaws.models.embedder().embed``) on the
  same chunk texts, i.e. what the job adds on top of the model (S3 reads, chunking, index swap, polling).
- Retrieve at 1k and 50k chunks: embedding 50k chunks with the local model would take hours on 2 cores, so both
  indexes are filled through the index's own ``KnowledgeIndex.replace_source`` with **replicated** chunks: the
  texts of the ingested sample (product name and numbers changed per copy) and the real embedder's vectors of
  that sample, each copy perturbed with Gaussian noise and re-normalised. BM25 statistics and the vector matrix
  therefore have the real sizes; the ranking is not meant to be meaningful. Baseline: the 1k index.
- Converse: greedy answers to test-set questions, one request at a time vs 8 concurrent requests (the server
  decodes concurrent greedy requests together: its dynamic batching). Baseline: the single-request rate.

No goals were set for this section by the issue: figures and ratios are reported as measured.
"""

from __future__ import annotations

import functools
import json
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CATALOG = REPO / "include" / "data" / "catalog" / "industrial_catalog.txt"
TEST_QA = REPO / "include" / "data" / "qa" / "test.json"
FIGURES = REPO / "out" / "bench" / "local_aws.json"


def _bakeoff_chunk_words() -> int:
    """The bake-off's local chunk size (``LOCAL_SCALE``, else the config default 300): FIXED_SIZE "tokens",
    which the local AWS counts as words, 20 % overlap."""
    from devstack.stack import LOCAL_SCALE

    return int(LOCAL_SCALE.get("TAILOR__KNOWLEDGE_BASE__CHUNK_MAX_TOKENS", 300))


CHUNK_WORDS = _bakeoff_chunk_words()


def chunking(words: int = CHUNK_WORDS) -> dict[str, Any]:
    return {"chunkingStrategy": "FIXED_SIZE",
            "fixedSizeChunkingConfiguration": {"maxTokens": words, "overlapPercentage": 20}}

NOISE_NORM = 0.1  # expected L2 norm of the noise added to each replicated unit vector


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a fresh thread, as the server runs each request and each ingestion job: torch's CPU
    threading behaves differently on the main thread (measured: a one-question embedding took ~0.5 s on the main
    thread vs ~30 ms on another thread while the 2 cores were busy), so in-process timings use the server's way."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rss_mb() -> float:
    """Resident set size of this process now, in MB (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# --- generated data ------------------------------------------------------------------------------------------


def _shift_numbers(text: str, k: int) -> str:
    """Every stand-alone number + k (model codes such as VM-200 kept): copies differ in their facts."""
    if k == 0:
        return text
    return re.sub(r"(?<![\w.-])(\d+)(?![\d.])", lambda m: str(int(m.group(1)) + k), text)


def product_documents(copies: int, products: int | None = None,
                      words: int | None = None) -> list[tuple[str, str, dict[str, str]]]:
    """``copies`` x the sample catalog's (first ``products``) products as KB documents (each cut to its first
    ``words`` words if given: tests): (key, text, metadata)."""
    from tailor.catalog import validate_file

    chosen = validate_file(SAMPLE_CATALOG).products[:products]
    documents = []
    for k in range(copies):
        for product in chosen:
            name = product.name if k == 0 else f"{product.name} Mk{k + 1}"
            text = _shift_numbers(product.to_document(), k).replace(product.name, name)
            text = " ".join(text.split()[:words]) if words else text
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            documents.append((f"{slug}.txt", text, {"product_name": name}))
    return documents


def replicate(texts: list[str], metadata: list[dict[str, Any]], vectors: Any, n: int, seed: int = 7,
              data_source_id: str = "bench") -> tuple[list[Any], Any]:
    """``n`` chunks and unit vectors from a real sample: copy ``i`` of sample chunk ``j`` gets the text with
    ``Series i`` appended to the product name and its numbers shifted, and the vector plus noise, re-normalised."""
    import torch

    from localaws.knowledge import Chunk

    m = len(texts)
    generator = torch.Generator().manual_seed(seed)
    base = vectors[torch.arange(n) % m]
    noise = torch.randn(base.shape, generator=generator) * (NOISE_NORM / base.shape[1] ** 0.5)
    replicated = torch.nn.functional.normalize(base + noise, dim=-1)
    chunks = []
    for i in range(n):
        copy, j = divmod(i, m)
        name = metadata[j].get("product_name", "")
        text = texts[j] if copy == 0 else _shift_numbers(texts[j], copy).replace(name, f"{name} Series {copy}")
        chunks.append(Chunk(f"{data_source_id}-{i:06d}", text, f"s3://bench/{j}/{copy}.txt", data_source_id,
                            {"product_name": f"{name} Series {copy}" if copy else name}))
    return chunks, replicated


def questions(n: int) -> list[str]:
    qa = json.loads(TEST_QA.read_text(encoding="utf-8"))
    return [qa[i % len(qa)]["question"] for i in range(n)]


# --- the server ------------------------------------------------------------------------------------------------


@dataclass
class Server:
    endpoint_url: str
    bucket: str
    knowledge_base_id: str
    data_source_id: str
    data_prefix: str
    chunk_words: int = CHUNK_WORDS

    def client(self, service: str, **kwargs: Any) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(service, endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="localaws", aws_secret_access_key="localaws",
                            config=Config(max_pool_connections=32, retries={"max_attempts": 1},
                                          read_timeout=600), **kwargs)


@contextmanager
def local_aws(chunk_words: int = CHUNK_WORDS) -> Iterator[Server]:
    """The local AWS in this process (a free port), with a bucket, a knowledge base and an S3 data source."""
    from localaws.bootstrap import bootstrap
    from localaws.server import LocalAWS

    server = LocalAWS().start()
    try:
        prefix = "kb-data/"
        ids = bootstrap(server.endpoint_url, {
            "bucket": "tailor-bench", "queue_name": "tailor-bench-events", "notification_prefix": "catalog/incoming/",
            "notification_suffix": ".txt", "knowledge_base_name": "tailor-bench-kb",
            "data_source_name": "tailor-bench-source", "data_prefix": prefix,
            "embedding_model_arn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0",
            "chunk_max_tokens": chunk_words, "chunk_overlap_percent": 20})
        yield Server(server.endpoint_url, ids["bucket"], ids["knowledge_base_id"], ids["data_source_id"], prefix,
                     chunk_words)
    finally:
        server.stop()


# --- measurements ----------------------------------------------------------------------------------------------


@dataclass
class Ingestion:
    documents: int
    chunks: int
    job_seconds: float  # StartIngestionJob -> COMPLETE seen by GetIngestionJob polling (every 0.1 s)
    embed_seconds: float  # the embedder alone on the same chunk texts (model already loaded)
    embedder_load_seconds: float

    @property
    def job_rate(self) -> float:
        return self.chunks / self.job_seconds

    @property
    def embed_rate(self) -> float:
        return self.chunks / self.embed_seconds


def measure_ingestion(server: Server, copies: int, products: int | None = None,
                      words: int | None = None) -> tuple[Ingestion, list[str], list[dict[str, Any]], Any]:
    """Ingest ``copies`` x the catalog through StartIngestionJob; return the figures and the sample's chunk
    texts, metadata and real vectors (for the replicated indexes)."""
    from localaws.knowledge import chunk_text
    from localaws.models import embedder

    started = time.perf_counter()
    model = embedder()  # loaded once, outside the timings (the server process shares it)
    load_seconds = time.perf_counter() - started
    in_thread(lambda: model.embed(["warm-up"]))
    s3, agent = server.client("s3"), server.client("bedrock-agent")
    documents = product_documents(copies, products, words)
    for name, text, attributes in documents:
        key = server.data_prefix + name
        s3.put_object(Bucket=server.bucket, Key=key, Body=text.encode())
        s3.put_object(Bucket=server.bucket, Key=key + ".metadata.json",
                      Body=json.dumps({"metadataAttributes": attributes}).encode())
    started = time.perf_counter()
    job = agent.start_ingestion_job(knowledgeBaseId=server.knowledge_base_id,
                                    dataSourceId=server.data_source_id)["ingestionJob"]
    while job["status"] not in ("COMPLETE", "FAILED", "STOPPED"):
        time.sleep(0.1)
        job = agent.get_ingestion_job(knowledgeBaseId=server.knowledge_base_id, dataSourceId=server.data_source_id,
                                      ingestionJobId=job["ingestionJobId"])["ingestionJob"]
    job_seconds = time.perf_counter() - started
    if job["status"] != "COMPLETE":
        raise RuntimeError(f"ingestion job ended {job['status']}: {job.get('failureReasons')}")
    # The same chunks the job made (the server sorts keys; order does not matter for the throughput).
    pieces = [(piece, metadata) for _, text, metadata in sorted(documents)
              for piece in chunk_text(text, chunking(server.chunk_words))]
    texts, metadata = [p for p, _ in pieces], [m for _, m in pieces]
    started = time.perf_counter()
    vectors = in_thread(lambda: model.embed(texts))
    embed_seconds = time.perf_counter() - started
    return Ingestion(len(documents), len(texts), job_seconds, embed_seconds, load_seconds), texts, metadata, vectors


@dataclass
class RetrieveRow:
    chunks: int
    build_seconds: float  # KnowledgeIndex.replace_source (vector matrix + BM25 statistics)
    rss_growth_mb: float  # RSS of this process after the build minus before (index of the previous size freed)
    queries: int
    p50_ms: float
    p95_ms: float
    embed_query_ms: float  # median, in-process: the query's embedding
    search_ms: float  # median, in-process: KnowledgeIndex.search (vectors, BM25, ranking)


def measure_retrieve(server: Server, texts: list[str], metadata: list[dict[str, Any]], vectors: Any, size: int,
                     queries: int, top_k: int = 3) -> RetrieveRow:
    """Fill the server's index with ``size`` replicated chunks, then time ``queries`` Retrieve calls over HTTP."""
    import gc

    from localaws import bedrock_agent
    from localaws.models import embedder

    index = bedrock_agent.STORE.indexes[server.knowledge_base_id]
    index.replace_source(server.data_source_id, [], vectors[:0])  # free the previous size before measuring
    gc.collect()
    chunks, replicated = replicate(texts, metadata, vectors, size, data_source_id=server.data_source_id)
    before = rss_mb()
    started = time.perf_counter()
    index.replace_source(server.data_source_id, chunks, replicated)
    build = time.perf_counter() - started
    growth = rss_mb() - before
    del chunks, replicated
    runtime = server.client("bedrock-agent-runtime")
    asked = questions(queries + 3)

    def call(question: str) -> float:
        started = time.perf_counter()
        hits = runtime.retrieve(knowledgeBaseId=server.knowledge_base_id, retrievalQuery={"text": question},
                                retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": top_k}})
        assert len(hits["retrievalResults"]) == top_k
        return (time.perf_counter() - started) * 1000

    for question in asked[:3]:  # warm-up: connection, first query
        call(question)
    latencies = [call(question) for question in asked[3:]]
    embed_ms: list[float] = []
    search_ms: list[float] = []

    def split(question: str) -> None:
        started = time.perf_counter()
        vector = embedder().embed([question])[0]
        embed_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        index.search(question, vector, top_k)
        search_ms.append((time.perf_counter() - started) * 1000)

    for question in asked[3 : 3 + min(queries, 10)]:
        in_thread(functools.partial(split, question))
    return RetrieveRow(size, build, growth, len(latencies), percentile(latencies, 50), percentile(latencies, 95),
                       statistics.median(embed_ms), statistics.median(search_ms))


@dataclass
class ConverseRow:
    mode: str  # "single" | "8 concurrent"
    requests: int
    wall_seconds: float
    output_tokens: int
    input_tokens: int
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.wall_seconds


def measure_converse(server: Server, max_tokens: int, single_requests: int, concurrent_rounds: int,
                     concurrency: int = 8) -> list[ConverseRow]:
    """Greedy Converse calls one at a time, then ``concurrent_rounds`` rounds of ``concurrency`` at once."""
    client = server.client("bedrock-runtime")
    model_id = "us.meta.llama3-1-8b-instruct-v1:0"
    system = [{"text": "You are a product expert. Answer in one to three sentences."}]

    def call(question: str) -> tuple[float, int, int]:
        started = time.perf_counter()
        reply = client.converse(modelId=model_id, system=system,
                                messages=[{"role": "user", "content": [{"text": question}]}],
                                inferenceConfig={"maxTokens": max_tokens, "temperature": 0.0})
        usage = reply["usage"]
        return (time.perf_counter() - started) * 1000, usage["outputTokens"], usage["inputTokens"]

    call("warm-up: load the model")
    asked = questions(single_requests + concurrent_rounds * concurrency)
    started = time.perf_counter()
    single = [call(q) for q in asked[:single_requests]]
    rows = [ConverseRow("single", len(single), time.perf_counter() - started, sum(s[1] for s in single),
                        sum(s[2] for s in single), [s[0] for s in single])]
    rest = asked[single_requests:]
    results: list[tuple[float, int, int]] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for r in range(concurrent_rounds):
            results += list(pool.map(call, rest[r * concurrency : (r + 1) * concurrency]))
    rows.append(ConverseRow(f"{concurrency} concurrent", len(results), time.perf_counter() - started,
                            sum(s[1] for s in results), sum(s[2] for s in results), [s[0] for s in results]))
    return rows


@dataclass
class Figures:
    ingestion: Ingestion
    retrieve: list[RetrieveRow]
    converse: list[ConverseRow]
    dtype: str
    seconds: float


def measure(copies: int = 1, sizes: tuple[int, ...] = (1_000, 50_000), queries: int = 40, max_tokens: int = 64,
            single_requests: int = 3, concurrent_rounds: int = 1, products: int | None = None,
            chunk_words: int = CHUNK_WORDS, doc_words: int | None = None,
            progress: Callable[[str], None] = lambda s: None) -> Figures:
    from localaws.serving import serving_dtype

    started = time.perf_counter()
    with local_aws(chunk_words) as server:
        ingestion, texts, metadata, vectors = measure_ingestion(server, copies, products, doc_words)
        progress(f"ingestion: {ingestion.chunks} chunks in {ingestion.job_seconds:.1f} s")
        rows = []
        for size in sizes:
            rows.append(measure_retrieve(server, texts, metadata, vectors, size, queries))
            progress(f"retrieve at {size} chunks: p95 {rows[-1].p95_ms:.0f} ms")
        bedrock_agent_cleanup(server)
        converse = measure_converse(server, max_tokens, single_requests, concurrent_rounds)
        progress(f"converse: {converse[0].tokens_per_s:.1f} vs {converse[1].tokens_per_s:.1f} tokens/s")
    release_models()
    return Figures(ingestion, rows, converse, serving_dtype(), time.perf_counter() - started)


def bedrock_agent_cleanup(server: Server) -> None:
    """Empty the index (the 50k chunks hold hundreds of MB) before the Converse measurement."""
    import gc

    from localaws import bedrock_agent

    index = bedrock_agent.STORE.indexes[server.knowledge_base_id]
    index.replace_source(server.data_source_id, [], None)
    gc.collect()


def release_models() -> None:
    """Drop the models this section loaded in-process (the later sections run their own processes)."""
    import gc

    from localaws import models, serving

    serving.shutdown()
    models.embedder.cache_clear()
    gc.collect()


# --- report ----------------------------------------------------------------------------------------------------


def table(figures: Figures) -> str:
    ing, rows, conv = figures.ingestion, figures.retrieve, figures.converse
    base = rows[0]
    lines = [
        "| measurement | figure | baseline | ratio |",
        "|---|---|---|---|",
        f"| ingestion: StartIngestionJob -> COMPLETE, {ing.documents} documents, {ing.chunks} chunks "
        f"| **{ing.job_rate:.1f} chunks/s** ({ing.job_seconds:.1f} s) | embedder alone on the same chunks: "
        f"{ing.embed_rate:.1f} chunks/s ({ing.embed_seconds:.1f} s) | {ing.job_rate / ing.embed_rate:.2f} |",
    ]
    for r in rows:
        ratio = ("1.00 (baseline)" if r is base
                 else f"p95 {r.p95_ms / base.p95_ms:.1f}x, p50 {r.p50_ms / base.p50_ms:.1f}x")
        lines.append(
            f"| Retrieve over HTTP, {r.chunks:,} chunks, top 3, HYBRID ({r.queries} queries) | p50 {r.p50_ms:.0f} ms, "
            f"**p95 {r.p95_ms:.0f} ms** | {base.chunks:,} chunks: p50 {base.p50_ms:.0f} ms, p95 {base.p95_ms:.0f} ms "
            f"| {ratio} |")
    single = conv[0]
    for c in conv:
        ratio = "1.00 (baseline)" if c is single else f"{c.tokens_per_s / single.tokens_per_s:.2f}"
        lines.append(
            f"| Converse, {c.mode}: {c.requests} requests, {c.output_tokens} output tokens "
            f"(median latency {statistics.median(c.latencies_ms) / 1000:.1f} s) | **{c.tokens_per_s:.1f} tokens/s** "
            f"| single requests: {single.tokens_per_s:.1f} tokens/s | {ratio} |")
    lines += ["", "| index size | build s (`replace_source`) | RSS growth MB | query embedding ms (median) "
                  "| `search` ms (median) | Retrieve p50 ms | Retrieve p95 ms |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.chunks:,} | {r.build_seconds:.1f} | {r.rss_growth_mb:.0f} | {r.embed_query_ms:.1f} "
                     f"| {r.search_ms:.1f} | {r.p50_ms:.0f} | {r.p95_ms:.0f} |")
    return "\n".join(lines)


def save(figures: Figures) -> None:
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    data = asdict(figures)
    data["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    data["retrieve_p95_ms"] = {r.chunks: r.p95_ms for r in figures.retrieve}
    data["converse_tokens_per_s"] = {c.mode: c.tokens_per_s for c in figures.converse}
    FIGURES.write_text(json.dumps(data, indent=1))


def run(copies: int = 1, sizes: tuple[int, ...] = (1_000, 50_000), queries: int = 30,
        single_requests: int = 3, concurrent_rounds: int = 1) -> tuple[str, bool]:
    """Return (markdown section, True: no goal is set for these figures)."""
    figures = measure(copies, sizes, queries, single_requests=single_requests,
                      concurrent_rounds=concurrent_rounds, progress=lambda s: print(f"  local_aws: {s}", flush=True))
    save(figures)
    rows, conv = figures.retrieve, figures.converse
    big, small = rows[-1], rows[0]
    ingestion_ratio = figures.ingestion.job_rate / figures.ingestion.embed_rate
    text = "\n".join([
        "## Local AWS data plane",
        "The local AWS served in the benchmark's process (moto + our handlers on 127.0.0.1), called over HTTP with "
        f"boto3. **Ingestion**: the sample catalog's {figures.ingestion.documents} product documents"
        + (" (copies renamed, numbers shifted)" if copies > 1 else "")
        + f" through `StartIngestionJob` ({CHUNK_WORDS}-word chunks, 20 % overlap, "
        "as the bake-off's data source), polled every 0.1 s; the embedder (SmolLM2 "
        f"layers 1-8) was loaded beforehand ({figures.ingestion.embedder_load_seconds:.1f} s). **Retrieve**: "
        f"embedding {sizes[-1]:,} chunks at the measured rate would take "
        f"~{sizes[-1] / figures.ingestion.embed_rate / 3600:.1f} h on this machine, so both indexes are filled "
        f"through the index's own `replace_source` with the {figures.ingestion.chunks} ingested chunks **replicated**: "
        "texts with the product name and numbers changed per copy, vectors from the real embedder on the sample plus "
        f"Gaussian noise (norm ~{NOISE_NORM}), re-normalised; BM25 statistics and the vector matrix have the real "
        "sizes, the rankings are not meaningful. **Converse**: greedy answers (max 64 tokens) to test-set questions, "
        f"model served in {figures.dtype}; the 8 concurrent requests are decoded together by the server's dynamic "
        f"batching (window {_batch_window_ms()} ms). No goals were set for these figures; section wall time "
        f"{figures.seconds:.0f} s.",
        "",
        table(figures),
        "",
        f"At {big.chunks:,} chunks, `KnowledgeIndex.search` takes {big.search_ms:.0f} ms of the {big.p50_ms:.0f} ms "
        f"median Retrieve ({small.search_ms:.1f} ms at {small.chunks:,} chunks) and the query's embedding "
        f"{big.embed_query_ms:.0f} ms: the vector half of HYBRID search is one matrix-vector product, but the "
        "keyword half scores every chunk with BM25 in a Python loop and then sorts all scores, so it grows linearly "
        "with the index. Next step if a bigger local index is ever needed: an inverted index for BM25 (score only "
        "chunks containing a query term) and `torch.topk` instead of a full sort. Ingestion: the job runs at "
        f"{ingestion_ratio:.2f} of the embedder's own rate"
        + (", i.e. it is bound by the embedder" if ingestion_ratio >= 0.8 else
           f"; the rest ({figures.ingestion.job_seconds - figures.ingestion.embed_seconds:.1f} s) is S3 reads, "
           "chunking, the index swap and polling")
        + f". Converse: 8 concurrent requests give {conv[1].tokens_per_s / conv[0].tokens_per_s:.1f}x the tokens/s "
        "of one request at a time (the lever the bake-off's generation relies on), at the price of a longer "
        f"latency per request ({statistics.median(conv[1].latencies_ms) / 1000:.1f} s vs "
        f"{statistics.median(conv[0].latencies_ms) / 1000:.1f} s median).",
    ])
    return text, True


def _batch_window_ms() -> int:
    from localaws.serving import BATCH_WINDOW_SECONDS

    return int(BATCH_WINDOW_SECONDS * 1000)


if __name__ == "__main__":
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    print(run()[0])
