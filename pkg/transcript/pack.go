package transcript

import (
	"fmt"

	"github.com/klauspost/compress/s2"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// MaxMessage is the most lines one stored message holds, unpacked (a line
// longer than that goes alone).
const MaxMessage = 1 << 20

// Pack compresses a message of transcript lines for storage (S2, block
// format), into dst's space if it has enough. Terminal output compresses
// several times over, and what storage is not given to write is what
// recording costs least: storing a transcript uncompressed cost the
// server as much again as relaying the output did.
func Pack(dst, lines []byte) []byte {
	return s2.Encode(dst[:cap(dst)], lines)
}

// Unpack returns the lines of a stored message, given its encoding
// (wire.EncodingHeader: wire.EncodingS2, or "" for lines as they are); a
// message that would unpack to more than max bytes is refused.
func Unpack(encoding string, data []byte, max int) ([]byte, error) {
	switch encoding {
	case "":
		return data, nil
	case wire.EncodingS2:
		n, err := s2.DecodedLen(data)
		if err != nil {
			return nil, fmt.Errorf("transcript message: %w", err)
		}
		if n > max {
			return nil, fmt.Errorf("transcript message of %d bytes unpacked, more than %d", n, max)
		}
		return s2.Decode(nil, data)
	default:
		return nil, fmt.Errorf("transcript message in unknown encoding %q", encoding)
	}
}
