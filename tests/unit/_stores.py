"""A pass-through pyarrow file system for the io tests' fault-injecting stores (test-only: it forwards every call,
deletes included, to the real file system it wraps, so it stays out of the library)."""

from __future__ import annotations

import pyarrow.fs as pafs


class PassThroughStore(pafs.FileSystemHandler):
    """A file system handler that hands every call to the real file system ``real``. A test subclasses it,
    overrides the calls it makes fail (a read that drops, a write that loses bytes) and wraps it in
    ``pyarrow.fs.PyFileSystem``."""

    def __init__(self, real: pafs.FileSystem):
        self.real = real

    def __eq__(self, other):
        return self is other

    __hash__ = object.__hash__

    def get_type_name(self):
        return f"pass-through-{type(self).__name__}"

    def normalize_path(self, path):
        return path

    def equals(self, other):
        return self is other

    def get_file_info(self, paths):
        return self.real.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.real.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.real.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.real.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.real.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise NotImplementedError

    def delete_file(self, path):
        self.real.delete_file(path)

    def move(self, src, dest):
        self.real.move(src, dest)

    def copy_file(self, src, dest):
        self.real.copy_file(src, dest)

    def open_input_file(self, path):
        return self.real.open_input_file(path)

    def open_input_stream(self, path):
        return self.real.open_input_stream(path)

    def open_output_stream(self, path, metadata):
        return self.real.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        raise NotImplementedError
