"""`agent chat`: talk with the agent about a run: questions answered from the history,
directions stored for later prompts, proposals reviewed and approved, evaluations streamed.
Leaving and coming back (`agent chat --run RUN`) continues the same conversation."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default="latest", help="the run to talk about (default: the latest)")
    parser.add_argument("--llm", choices=["local", "openai"],
                        help="LLM backend (default: the run's, else local: the offline model)")
    parser.add_argument("--model", help="LLM model (default: the run's, else the backend's default)")
    parser.add_argument("--unsafe", action="store_true", default=None,
                        help="evaluate code-mode proposals of a run started with --unsafe the same way")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agent.chat.session import ChatContext, ChatSession, RunTools
    from agent.config import load_settings
    from agent.engine.resume import resume_settings
    from agent.llm import make_backend
    from agent.prompting import Prompts
    from agent.progress import SearchProgress
    from agent.store import History

    current = load_settings({"home": args.home, "llm": args.llm, "model": args.model}).settings
    history = History(current.home, lock_timeout=current.lock_timeout)
    run_id = history.resolve_run_id(args.run)
    stored = history.get_run(run_id)
    settings = resume_settings(current, {"unsafe": args.unsafe}, stored["config"] or {})
    settings = settings.model_copy(update={"llm": args.llm or settings.llm or current.llm or "local",
                                           "model": args.model or (settings.model if not args.llm else None)})
    console = Console(highlight=False)
    progress = SearchProgress(Console(stderr=True, highlight=False))
    tools: list[RunTools] = []

    def get_tools() -> RunTools:
        if not tools:
            tools.append(RunTools(settings, history, run_id))
        return tools[0]

    def note(text: str) -> None:
        console.print(f"[dim]{text}[/]")

    user_prompts = settings.home / "prompts"
    context = ChatContext(history=history, run_id=run_id, llm=lambda: make_backend(settings),
                          tools=get_tools, prompts=Prompts(user_prompts if user_prompts.is_dir() else None),
                          on_event=progress.event, on_note=note)
    session = ChatSession(settings.home, context)
    try:
        earlier = session.messages
        console.print(f"[bold]agent chat[/] on run {run_id} ({stored['task']}, {stored['status']}); "
                      "/help lists the commands, /quit leaves")
        if earlier:
            console.print(f"[dim]-- the conversation so far ({len(earlier)} messages) --[/]")
            for m in earlier:
                console.print(("[dim]  you: " if m["role"] == "user" else "[dim]  agent: ") + _escape(m["content"]) + "[/]")
            directions = history.directions(run_id)
            if directions:
                console.print("[dim]directions: " + "; ".join(_escape(d) for d in directions) + "[/]")
            if session.pending:
                console.print("[dim]a proposal is waiting for review: /approve, /edit or /reject[/]")
            console.print("[dim]-- continuing --[/]")
        while True:
            try:
                text = input("you> ")
            except EOFError:
                break
            text = text.strip()
            if not text:
                continue
            if text.lower() in ("/quit", "/exit", "/q"):
                break
            reply = session.send(text)
            console.print("agent> " + _escape(reply))
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
        progress.stop()
        for t in tools:
            t.close()
    console.print(f"[dim]conversation kept: agent chat --run {run_id} continues it[/]")
    sys.stdout.flush()
    return 0


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
