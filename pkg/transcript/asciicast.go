// Package transcript is the format of session transcripts: asciicast v2,
// asciinema's (https://docs.asciinema.org/manual/asciicast/v2/), which
// asciinema plays and cats and the asciinema-player web component shows.
// A transcript is newline-delimited JSON: a header object, then events
// [time, code, data], time in seconds since the session started.
package transcript

import (
	"encoding/binary"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// Event codes.
const (
	Output = "o" // what the process wrote
	Input  = "i" // what viewers typed (only when input is recorded)
	Resize = "r" // the terminal's new size, "COLSxROWS"
	Marker = "m" // a marker with a label: where the transcript was cut
)

// ContentType is what a transcript is served as: the type asciinema's
// server gives .cast files.
const ContentType = "application/x-asciicast"

// Header is a transcript's first line.
type Header struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp"`
	Command   string            `json:"command,omitempty"`
	Title     string            `json:"title,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

// AppendHeader appends h (version 2) as a line.
func AppendHeader(b []byte, h Header) []byte {
	h.Version = 2
	line, _ := json.Marshal(h) // a struct of strings and numbers
	return append(append(b, line...), '\n')
}

// AppendEvent appends an event at t since the start as a line. data is
// text: bytes that are not UTF-8 become U+FFFD, as in asciinema's own
// recordings (a frame of output never ends inside a character: the
// bridge cuts frames at character boundaries).
func AppendEvent[T ~string | ~[]byte](b []byte, t time.Duration, code string, data T) []byte {
	b = append(b, '[')
	b = strconv.AppendFloat(b, t.Seconds(), 'f', 6, 64)
	b = append(b, ", \""...)
	b = append(b, code...)
	b = append(b, "\", "...)
	b = appendString(b, []byte(data))
	return append(b, "]\n"...)
}

const hexDigits = "0123456789abcdef"

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// allPlain says whether the eight bytes of w are all plain: none under
// 0x20 or from 0x80 on, no quote and no backslash (a word at a time: the
// usual bit tricks for "has a byte less than n" and "has a zero byte").
func allPlain(w uint64) bool {
	less := func(v uint64, n uint64) uint64 { return (v - ones*n) &^ v } // a byte < n (n <= 0x80)
	quote, backslash := w^(ones*'"'), w^(ones*'\\')                      // zero bytes where they were
	return (less(w, 0x20)|less(quote, 1)|less(backslash, 1)|w)&highs == 0
}

// plain are the bytes a JSON string holds as they are: printable ASCII
// but the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a JSON string, as encoding/json writes it but
// for its HTML escaping (of <, > and &, which no player needs): invalid
// UTF-8 as U+FFFD, control characters as \uXXXX, U+2028 and U+2029 escaped.
// It is the recording's per-byte cost, so it copies runs of plain ASCII
// at once rather than byte by byte (test: it decodes as encoding/json's).
func appendString(b, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while they are all plain, then byte by byte.
		for i+8 <= len(s) && allPlain(binary.LittleEndian.Uint64(s[i:])) {
			i += 8
		}
		for i < len(s) && plain[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Size is a resize event's data.
func Size(cols, rows int) string {
	return strconv.Itoa(cols) + "x" + strconv.Itoa(rows)
}
