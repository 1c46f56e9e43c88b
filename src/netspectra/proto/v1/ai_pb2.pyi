from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AnalyzeTrafficRequest(_message.Message):
    __slots__ = ("text_input",)
    TEXT_INPUT_FIELD_NUMBER: _ClassVar[int]
    text_input: str
    def __init__(self, text_input: _Optional[str] = ...) -> None: ...

class AnalyzeTrafficResponse(_message.Message):
    __slots__ = ("text_output",)
    TEXT_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    text_output: str
    def __init__(self, text_output: _Optional[str] = ...) -> None: ...

class AnalyzePromptRequest(_message.Message):
    __slots__ = ("prompt",)
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    def __init__(self, prompt: _Optional[str] = ...) -> None: ...

class AnalyzePromptResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: str
    def __init__(self, chunk: _Optional[str] = ...) -> None: ...
