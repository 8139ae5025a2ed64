#!/usr/bin/env python3
"""The design e2e-plan replaces, for the critical-path benchmark: clone each file's database
from the template in turn, then start every server and every test process at once.

    naive_orchestrator.py ROOT PG_URL TEMPLATE PYTHON FILE...

Prints the wall time in seconds (from the first clone to the last test's end). Exit 1 if a test
process failed. Standard library only; psql for the clones.
"""
import asyncio
import os
import subprocess
import sys
import time
import urllib.request


def psql(pg, sql):
    subprocess.run(["psql", f"{pg}/postgres", "-qc", sql], check=True, capture_output=True)


async def ready(port, deadline):
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"server on {port} never ready")


async def worker(root, pg, py, i, path, db):
    port = 42000 + i
    env = dict(os.environ, PORT=str(port), DATABASE_URL=f"{pg}/{db}",
               BASE_URL=f"http://127.0.0.1:{port}")
    server = await asyncio.create_subprocess_exec(
        py, "app.py", cwd=root, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await ready(port, time.time() + 60)
        test = await asyncio.create_subprocess_exec(
            py, "-m", "pytest", path, "-q", "-p", "no:cacheprovider", cwd=root, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return await test.wait()
    finally:
        server.terminate()
        await server.wait()


async def main():
    root, pg, template, py, *files = sys.argv[1:]
    dbs = [f"naive_{i}" for i in range(len(files))]
    start = time.time()
    for db in dbs:
        psql(pg, f"CREATE DATABASE {db} TEMPLATE {template}")
    try:
        codes = await asyncio.gather(*(worker(root, pg, py, i, f, db)
                                       for i, (f, db) in enumerate(zip(files, dbs))))
    finally:
        wall = time.time() - start
        for db in dbs:
            psql(pg, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    print(f"{wall:.3f}")
    sys.exit(0 if all(c == 0 for c in codes) else 1)


asyncio.run(main())
