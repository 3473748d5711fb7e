"""Formatting for people: the `list` and `ps` tables, aligned as runc's tabwriter does."""
from __future__ import annotations


def aligned(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def container_table(states: list[dict]) -> str:
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    for state in states:
        rows.append([state["id"], str(state["pid"]), state["status"], state["bundle"],
                     state.get("created", ""), state.get("owner") or "root"])
    return aligned(rows)


def process_table(pids: list[int], ps_args: list[str]) -> str:
    """The host's `ps` output, header plus the container's processes (runc's `ps`)."""
    import subprocess

    output = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True).stdout
    lines = output.splitlines()
    if not lines:
        return ""
    header = lines[0].split()
    column = header.index("PID") if "PID" in header else 1
    wanted = {str(pid) for pid in pids}
    kept = [line for line in lines[1:] if len(line.split()) > column
            and line.split()[column] in wanted]
    return "\n".join([lines[0], *kept]) + "\n"
