package stream

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/meshery/terminal-apiserver/pkg/bridge"
)

// Options are a viewer's requested streams, from the query (stdin, stdout,
// stderr, tty).
type Options struct {
	Stdin, Stdout, Stderr, TTY bool
}

// ExitError carries a process's non-zero exit code to the final status.
type ExitError struct{ Code int32 }

func (e *ExitError) Error() string {
	return "command terminated with exit code " + strconv.Itoa(int(e.Code))
}

// Channels of the channel.k8s.io WebSocket protocols.
const (
	chanStdin = iota
	chanStdout
	chanStderr
	chanError
	chanResize
)

// ServeWebSocket speaks the server side of pods/attach over WebSocket:
// v5.channel.k8s.io (v4 plus half-closing stdin, what client-go's
// WebSocket executor asks for), v4.channel.k8s.io and its base64 variant
// (browsers). relay runs the viewer; its error becomes the final status.
func ServeWebSocket(w http.ResponseWriter, req *http.Request, opts Options, idle time.Duration,
	relay func(in io.Reader, out io.Writer, resize <-chan bridge.Size) error) {
	channel := func(on bool, t wsstream.ChannelType) wsstream.ChannelType {
		if on {
			return t
		}
		return wsstream.IgnoreChannel
	}
	channels := []wsstream.ChannelType{
		chanStdin:  channel(opts.Stdin, wsstream.ReadChannel),
		chanStdout: channel(opts.Stdout, wsstream.WriteChannel),
		chanStderr: channel(opts.Stderr && !opts.TTY, wsstream.WriteChannel),
		chanError:  wsstream.WriteChannel,
		chanResize: channel(opts.TTY, wsstream.ReadChannel),
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		"v5.channel.k8s.io":        {Binary: true, Channels: channels},
		"v4.channel.k8s.io":        {Binary: true, Channels: channels},
		"v4.base64.channel.k8s.io": {Binary: false, Channels: channels},
	})
	conn.SetIdleTimeout(idle)
	_, streams, err := conn.Open(w, req)
	if err != nil {
		// Open has answered the request already.
		return
	}
	defer conn.Close()

	sizes := make(chan bridge.Size, 1)
	if opts.TTY {
		go func() {
			defer close(sizes)
			dec := json.NewDecoder(streams[chanResize])
			for {
				var sz struct{ Width, Height uint16 }
				if err := dec.Decode(&sz); err != nil {
					return
				}
				select {
				case sizes <- bridge.Size{Cols: sz.Width, Rows: sz.Height}:
				default: // the relay takes the latest soon enough
				}
			}
		}()
	} else {
		close(sizes)
	}
	var in io.Reader
	if opts.Stdin {
		in = streams[chanStdin]
	}
	out := io.Discard
	if opts.Stdout {
		out = streams[chanStdout]
	}
	status := statusOf(relay(in, out, sizes))
	doc, _ := json.Marshal(status)
	_, _ = streams[chanError].Write(doc)
}

// statusOf is the final status document of the v4/v5 protocols.
func statusOf(err error) metav1.Status {
	var exit *ExitError
	switch {
	case err == nil:
		return metav1.Status{Status: metav1.StatusSuccess}
	case errors.As(err, &exit):
		return metav1.Status{Status: metav1.StatusFailure, Reason: "NonZeroExitCode", Message: err.Error(),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: strconv.Itoa(int(exit.Code))}}}}
	}
	return metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonInternalError, Message: err.Error()}
}
