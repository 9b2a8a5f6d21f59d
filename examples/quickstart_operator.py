"""Quick start, operator side: kill an agent everywhere, read the report, resume it."""

from mesh import Mesh

with Mesh() as mesh:  # NATS_URL, MESH_PREFIX... from the environment
    report = mesh.kill("agent://acme/prod/*", reason="broken template", wait=5.0)
    for row in report.instances:
        print(f"{row.instance}: {row.status.upper()} {row.metadata}")
    print(f"acknowledged: {report.acked}, silent: {len(report.missing)}")

    for inst in mesh.list_instances("agent://acme/*/*"):
        print(f"{inst.agent_uri}#{inst.instance}: {inst.status}")

    resumed = mesh.resume("agent://acme/prod/*", reason="template fixed")
    print(f"resumed: {[row.instance for row in resumed.instances]}")
