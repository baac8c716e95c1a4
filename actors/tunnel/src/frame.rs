//! The tunnel's frame codec (see the crate docs for the layout).

use bytes::{BufMut, Bytes, BytesMut};

/// A frame's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Open a stream to the named target.
    Open = 1,
    /// Stream bytes.
    Data = 2,
    /// The sender's half is closed.
    Close = 3,
    /// The stream is aborted.
    Reset = 4,
}

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What it is.
    pub kind: Kind,
    /// The stream it belongs to.
    pub stream: u32,
    /// Its payload.
    pub payload: Bytes,
}

/// A message that is not a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than the 5-byte header.
    #[error("tunnel frame of {0} bytes is shorter than its 5-byte header")]
    Short(usize),
    /// An unknown kind byte.
    #[error("unknown tunnel frame kind {0}")]
    Kind(u8),
}

impl Frame {
    /// A frame of `kind` for `stream`.
    pub fn new(kind: Kind, stream: u32, payload: impl Into<Bytes>) -> Self {
        Frame {
            kind,
            stream,
            payload: payload.into(),
        }
    }

    /// The bytes of the WebSocket message.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(5 + self.payload.len());
        b.put_u8(self.kind as u8);
        b.put_u32(self.stream);
        b.put_slice(&self.payload);
        b.freeze()
    }

    /// Parse a WebSocket message.
    pub fn decode(mut b: Bytes) -> Result<Self, FrameError> {
        if b.len() < 5 {
            return Err(FrameError::Short(b.len()));
        }
        let kind = match b[0] {
            1 => Kind::Open,
            2 => Kind::Data,
            3 => Kind::Close,
            4 => Kind::Reset,
            k => return Err(FrameError::Kind(k)),
        };
        let stream = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
        let payload = b.split_off(5);
        Ok(Frame {
            kind,
            stream,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for f in [
            Frame::new(Kind::Open, 1, "kubelet"),
            Frame::new(Kind::Data, 0xdead_beef, vec![0u8; 100]),
            Frame::new(Kind::Close, 7, Bytes::new()),
            Frame::new(Kind::Reset, 7, "no"),
        ] {
            assert_eq!(Frame::decode(f.encode()), Ok(f));
        }
        assert_eq!(
            Frame::decode(Bytes::from_static(&[2, 0, 0])),
            Err(FrameError::Short(3))
        );
        assert_eq!(
            Frame::decode(Bytes::from_static(&[9, 0, 0, 0, 1])),
            Err(FrameError::Kind(9))
        );
    }
}
