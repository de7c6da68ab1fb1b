// Package transcript is the format of session transcripts: asciicast v2,
// asciinema's (https://docs.asciinema.org/manual/asciicast/v2/), which
// asciinema plays and cats and the asciinema-player web component shows.
// A transcript is newline-delimited JSON: a header object, then events
// [time, code, data], time in seconds since the session started.
package transcript

import (
	"encoding/json"
	"strconv"
	"time"
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
func AppendEvent(b []byte, t time.Duration, code, data string) []byte {
	b = append(b, '[')
	b = strconv.AppendFloat(b, t.Seconds(), 'f', 6, 64)
	b = append(b, ", \""...)
	b = append(b, code...)
	b = append(b, "\", "...)
	s, _ := json.Marshal(data) // a string
	b = append(b, s...)
	return append(b, "]\n"...)
}

// Size is a resize event's data.
func Size(cols, rows int) string {
	return strconv.Itoa(cols) + "x" + strconv.Itoa(rows)
}
