"""Package 2 (``application/vnd.oma.dm.request+json``), server -> device: ``{"CMD": [...]}``.

Positional commands :class:`Put`, :class:`Hget`, :class:`Cont`, :class:`End`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import quote

from bootstrap.dm.ddf import MoValidationError
from bootstrap.dm.mo import MoInstance
from bootstrap.dm.package._json import PackageError, dump, json_array, json_text, load_object

__all__ = ["REQUEST_MEDIA_TYPE", "Command", "Cont", "End", "Hget", "Put", "encode_request", "hget_url",
           "parse_request"]

REQUEST_MEDIA_TYPE = "application/vnd.oma.dm.request+json"


@dataclass(frozen=True)
class Put:
    """``["PUT", ClientURI, [MO instance]]``: data inline (DM-HLF-004)."""

    instance: MoInstance

    def to_json(self) -> list[Any]:
        return ["PUT", self.instance.client_uri, [self.instance.to_json()]]


@dataclass(frozen=True)
class Hget:
    """``["HGET", ServerURI, ClientURI?]``: the device GETs the data from a repository (DM-HLF-003).

    Without ClientURI (what we send) the client picks where the data goes and reports it in
    the status ``URI``; when it creates an MO instance, the client assigns its MIID.
    """

    server_uri: str
    client_uri: str | None = None

    def to_json(self) -> list[Any]:
        return ["HGET", self.server_uri] + ([self.client_uri] if self.client_uri is not None else [])


@dataclass(frozen=True)
class Cont:
    """``["CONT", ServerURI]``: send every following package 3 of this session to ServerURI."""

    server_uri: str

    def to_json(self) -> list[Any]:
        return ["CONT", self.server_uri]


@dataclass(frozen=True)
class End:
    """``["END"]``: no more commands in this session."""

    def to_json(self) -> list[Any]:
        return ["END"]


Command: TypeAlias = Put | Hget | Cont | End


def encode_request(commands: Iterable[Command]) -> bytes:
    """The package 2 body, ``{"CMD": [...]}``, compact UTF-8 JSON."""
    return dump({"CMD": [c.to_json() for c in commands]})


def parse_request(body: bytes | str) -> tuple[Command, ...]:
    """Read package 2 (the device side: used by tests, the benchmark and device simulators).

    Raises:
        PackageError: Not a package 2 we send: only PUT (with inline data), HGET and END.
    """
    doc = load_object(body, "package 2")
    commands: list[Command] = []
    for i, cmd in enumerate(json_array(doc.get("CMD"), "/CMD", 1024)):
        pointer = f"/CMD/{i}"
        if not isinstance(cmd, list) or not cmd or not isinstance(cmd[0], str):
            raise PackageError(pointer, "a command is an array starting with its name")
        name, args = cmd[0], cmd[1:]
        if name == "END" and not args:
            commands.append(End())
        elif name == "HGET" and len(args) in (1, 2):
            client_uri = json_text(args[1], f"{pointer}/2") if len(args) == 2 else None
            commands.append(Hget(json_text(args[0], f"{pointer}/1"), client_uri))
        elif name == "CONT" and len(args) == 1:
            commands.append(Cont(json_text(args[0], f"{pointer}/1")))
        elif name == "PUT" and len(args) == 2:
            data = json_array(args[1], f"{pointer}/2", 1)
            if len(data) != 1:
                raise PackageError(f"{pointer}/2", "PUT carries exactly one MO instance")
            try:
                instance = MoInstance.from_json(data[0])
            except MoValidationError as exc:
                raise PackageError(f"{pointer}/2/0", str(exc)) from None
            if instance.client_uri != args[0]:
                raise PackageError(f"{pointer}/1", "differs from the instance's ClientURI")
            commands.append(Put(instance))
        else:
            raise PackageError(pointer, f"unknown command or wrong arity: {name!r} with {len(args)} arguments")
    return tuple(commands)


def hget_url(repository_url: str, ref: str) -> str:
    """Ours: where a data repository serves one MO instance: ``{repository URL}/dmboot/{ref}``."""
    return f"{repository_url.rstrip('/')}/dmboot/{quote(ref, safe='')}"
