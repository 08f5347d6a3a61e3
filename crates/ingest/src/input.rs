//! What an extraction reads from: bytes already in memory, or a seekable stream (a file on disk).
//!
//! Plain text is decoded as it is read and zip containers are read through `Seek`, so neither holds
//! the whole file; parsers that need all of it at once (PDF, HTML, JSON, XML) call
//! [`Input::into_bytes`], which borrows what is already in memory and reads a stream whole.

use std::borrow::Cow;
use std::io::{self, Cursor, Read, Seek, SeekFrom};

use crate::ExtractError;

/// `Read + Seek` as one object-safe trait, so that a stream of any type fits in [`Input`].
pub(crate) trait ReadSeek: Read + Seek {}

impl<T: Read + Seek + ?Sized> ReadSeek for T {}

pub(crate) enum Input<'a> {
    Memory(Cursor<&'a [u8]>),
    Stream(&'a mut dyn ReadSeek),
}

impl<'a> Input<'a> {
    pub(crate) fn memory(bytes: &'a [u8]) -> Self {
        Input::Memory(Cursor::new(bytes))
    }

    /// The length of the content, from offset 0 to the end; leaves the position at 0.
    pub(crate) fn len(&mut self) -> Result<u64, ExtractError> {
        let len = self.seek(SeekFrom::End(0)).map_err(read_error)?;
        self.rewind().map_err(read_error)?;
        Ok(len)
    }

    /// The whole content: borrowed when it is already in memory, read from offset 0 otherwise.
    pub(crate) fn into_bytes(mut self) -> Result<Cow<'a, [u8]>, ExtractError> {
        let len = self.len()?;
        match self {
            Input::Memory(cursor) => Ok(Cow::Borrowed(cursor.into_inner())),
            Input::Stream(stream) => {
                let mut bytes = Vec::new();
                // Exact, and an error rather than an abort when the file cannot fit in memory.
                bytes
                    .try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX))
                    .map_err(|_| {
                        ExtractError::TooLarge(format!(
                            "the file ({}) does not fit in memory",
                            crate::sink::human_bytes(len)
                        ))
                    })?;
                stream.read_to_end(&mut bytes).map_err(read_error)?;
                Ok(Cow::Owned(bytes))
            }
        }
    }
}

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::Memory(cursor) => cursor.read(buf),
            Input::Stream(stream) => stream.read(buf),
        }
    }
}

impl Seek for Input<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match self {
            Input::Memory(cursor) => cursor.seek(pos),
            Input::Stream(stream) => stream.seek(pos),
        }
    }
}

pub(crate) fn read_error(e: io::Error) -> ExtractError {
    ExtractError::Io(e.to_string())
}

/// Fills `buf` as far as the input goes (short only at the end); returns how many bytes it read.
pub(crate) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, ExtractError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(e)),
        }
    }
    Ok(filled)
}
