// Command benchkit holds the two measuring ends of `make bench`, written in Go so that
// they cost little CPU next to the systems under test on the same machine.
//
//	benchkit sink  -listen 127.0.0.1:P -out delivered.log
//	benchkit proxy -listen 127.0.0.1:P -upstream 127.0.0.1:Q -out accepted.log
//
// The proxy sits between the load generator (Postfix's smtp-source) and the relay under
// test. It stamps each message with a header "X-Bench-Id: <n>" as the first line of its
// content and records, per message, when MAIL FROM went upstream, when the final "." went
// upstream and when the reply to it came back:
//
//	<n> <mail_ns> <dot_ns> <reply_ns> <reply code>
//
// The sink is the destination both relays deliver to. It answers every command positively,
// offers PIPELINING and CHUNKING (RFC 3030 BDAT, as the large mailbox providers' MX hosts
// do), and records, per message, when its final "." or its last chunk arrived and which of
// DATA and BDAT carried it:
//
//	<n> <received_ns> <recipients> <signed: 1 when a DKIM-Signature header is present> <DATA|BDAT>
//
// Records are written buffered and flushed every 100 ms and at SIGINT/SIGTERM, so a reader
// can count the lines while a run is going on.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var benchHeader = []byte("x-bench-id:")

// recorder appends lines to a file from many goroutines.
type recorder struct {
	mu sync.Mutex
	w  *bufio.Writer
	f  *os.File
}

func newRecorder(path string) *recorder {
	f, err := os.Create(path)
	if err != nil {
		fatal(err)
	}
	r := &recorder{w: bufio.NewWriterSize(f, 1<<16), f: f}
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			r.flush()
		}
	}()
	return r
}

func (r *recorder) record(format string, args ...any) {
	r.mu.Lock()
	fmt.Fprintf(r.w, format, args...)
	r.mu.Unlock()
}

func (r *recorder) flush() {
	r.mu.Lock()
	r.w.Flush()
	r.mu.Unlock()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchkit:", err)
	os.Exit(1)
}

func listen(addr string) net.Listener {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fatal(err)
	}
	return l
}

// serveUntilSignal accepts connections until SIGINT/SIGTERM, then flushes and exits.
func serveUntilSignal(l net.Listener, rec *recorder, handle func(net.Conn)) {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		rec.flush()
		rec.f.Close()
		os.Exit(0)
	}()
	fmt.Println("ready")
	for {
		conn, err := l.Accept()
		if err != nil {
			continue
		}
		go handle(conn)
	}
}

func now() int64 { return time.Now().UnixNano() }

func hasPrefixFold(line, prefix []byte) bool {
	return len(line) >= len(prefix) && bytes.EqualFold(line[:len(prefix)], prefix)
}

// readLine returns one line including its line ending; long lines come whole.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		buf := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			line, err = r.ReadSlice('\n')
			buf = append(buf, line...)
		}
		return buf, err
	}
	return line, err
}

func isDot(line []byte) bool {
	return bytes.Equal(line, []byte(".\r\n")) || bytes.Equal(line, []byte(".\n"))
}

// ---- sink ----

// content reads a message's header as its lines come: its bench id, and whether it is signed.
type content struct {
	id       string
	signed   int
	inHeader bool
}

func newContent() *content { return &content{id: "-", inHeader: true} }

func (c *content) line(line []byte) {
	if !c.inHeader {
		return
	}
	switch {
	case len(bytes.TrimRight(line, "\r\n")) == 0:
		c.inHeader = false
	case hasPrefixFold(line, benchHeader):
		c.id = string(bytes.TrimSpace(line[len(benchHeader):]))
	case hasPrefixFold(line, []byte("DKIM-Signature:")):
		c.signed = 1
	}
}

// lines reads the header's lines out of a message's bytes (chunks joined).
func (c *content) lines(message []byte) {
	for c.inHeader && len(message) > 0 {
		end := bytes.IndexByte(message, '\n') + 1
		if end == 0 {
			end = len(message)
		}
		c.line(message[:end])
		message = message[end:]
	}
}

func sinkSession(conn net.Conn, rec *recorder) {
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 1<<16)
	w := bufio.NewWriterSize(conn, 1<<12)
	reply := func(s string) {
		w.WriteString(s)
		if r.Buffered() == 0 { // pipelined commands are answered in one write
			w.Flush()
		}
	}
	reply("220 benchkit-sink ESMTP\r\n")
	rcpts := 0
	var chunks []byte // the BDAT chunks of the message under way
	for {
		line, err := readLine(r)
		if err != nil {
			return
		}
		switch {
		case hasPrefixFold(line, []byte("EHLO")):
			reply("250-benchkit-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-CHUNKING\r\n" +
				"250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n")
		case hasPrefixFold(line, []byte("MAIL")):
			rcpts, chunks = 0, chunks[:0]
			reply("250 2.1.0 Ok\r\n")
		case hasPrefixFold(line, []byte("RCPT")):
			rcpts++
			reply("250 2.1.5 Ok\r\n")
		case hasPrefixFold(line, []byte("BDAT ")):
			args, size := bytes.Fields(line[5:]), -1
			if len(args) > 0 {
				if n, err := strconv.Atoi(string(args[0])); err == nil {
					size = n
				}
			}
			if size < 0 {
				reply("501 5.5.4 Syntax: BDAT size [LAST]\r\n")
				return // the chunk's end is unknown: the session cannot go on
			}
			start := len(chunks)
			chunks = append(chunks, make([]byte, size)...)
			if _, err := io.ReadFull(r, chunks[start:]); err != nil {
				return
			}
			if len(args) < 2 || !bytes.EqualFold(args[1], []byte("LAST")) {
				reply(fmt.Sprintf("250 2.0.0 Ok: %d bytes\r\n", size))
				continue
			}
			c := newContent()
			c.lines(chunks)
			rec.record("%s %d %d %d BDAT\n", c.id, now(), rcpts, c.signed)
			chunks = chunks[:0]
			reply("250 2.0.0 Ok: queued\r\n")
		case hasPrefixFold(line, []byte("DATA")):
			w.WriteString("354 End data with <CR><LF>.<CR><LF>\r\n")
			w.Flush()
			c := newContent()
			for {
				line, err = readLine(r)
				if err != nil {
					return
				}
				if isDot(line) {
					break
				}
				c.line(line)
			}
			rec.record("%s %d %d %d DATA\n", c.id, now(), rcpts, c.signed)
			reply("250 2.0.0 Ok: queued\r\n")
		case hasPrefixFold(line, []byte("QUIT")):
			w.WriteString("221 2.0.0 Bye\r\n")
			w.Flush()
			return
		default: // HELO, RSET, NOOP and anything else
			reply("250 2.0.0 Ok\r\n")
		}
	}
}

// ---- proxy ----

type pending struct {
	id        int64
	mail, dot int64
}

type proxySession struct {
	mu           sync.Mutex
	mail         int64
	awaitingData bool // DATA sent, its reply not seen yet
	inData       bool // 354 seen: the client is sending content
	queue        []pending
}

var sequence atomic.Int64

func serveProxy(client net.Conn, upstreamAddr string, rec *recorder) {
	upstream, err := net.Dial("tcp", upstreamAddr)
	if err != nil {
		client.Close()
		return
	}
	s := &proxySession{}
	done := make(chan struct{}, 2)
	go func() { s.clientToServer(client, upstream); done <- struct{}{} }()
	go func() { s.serverToClient(upstream, client, rec); done <- struct{}{} }()
	<-done
	client.Close()
	upstream.Close()
	<-done
}

func (s *proxySession) clientToServer(client, upstream net.Conn) {
	r := bufio.NewReaderSize(client, 1<<16)
	w := bufio.NewWriterSize(upstream, 1<<16)
	first := false
	var id int64
	for {
		line, err := readLine(r)
		if err != nil {
			w.Flush()
			return
		}
		s.mu.Lock()
		inData := s.inData
		s.mu.Unlock()
		if inData {
			if first {
				id = sequence.Add(1)
				fmt.Fprintf(w, "X-Bench-Id: %d\r\n", id)
				first = false
			}
			if isDot(line) {
				s.mu.Lock()
				s.queue = append(s.queue, pending{id, s.mail, now()})
				s.inData = false
				s.mu.Unlock()
			}
		} else if hasPrefixFold(line, []byte("MAIL")) {
			s.mu.Lock()
			s.mail = now()
			s.mu.Unlock()
		} else if hasPrefixFold(line, []byte("DATA")) {
			s.mu.Lock()
			s.awaitingData = true
			s.mu.Unlock()
			first = true
		}
		w.Write(line)
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
	}
}

func (s *proxySession) serverToClient(upstream, client net.Conn, rec *recorder) {
	r := bufio.NewReaderSize(upstream, 1<<12)
	for {
		line, err := readLine(r)
		if err != nil {
			return
		}
		if len(line) >= 4 && line[3] == ' ' { // the last line of a reply
			at := now()
			code, _ := strconv.Atoi(string(line[:3]))
			s.mu.Lock()
			switch {
			case s.awaitingData:
				s.awaitingData = false
				s.inData = code == 354
			case len(s.queue) > 0:
				p := s.queue[0]
				s.queue = s.queue[1:]
				rec.record("%d %d %d %d %d\n", p.id, p.mail, p.dot, at, code)
			}
			s.mu.Unlock()
		}
		if _, err := client.Write(line); err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) < 2 {
		fatal(fmt.Errorf("usage: benchkit sink|proxy [flags]"))
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listenAddr := fs.String("listen", "127.0.0.1:0", "address to listen on")
	out := fs.String("out", "", "file to record into")
	upstream := fs.String("upstream", "", "proxy: the relay under test")
	fs.Parse(os.Args[2:])
	if *out == "" {
		fatal(fmt.Errorf("-out is required"))
	}
	l := listen(*listenAddr)
	rec := newRecorder(*out)
	switch os.Args[1] {
	case "sink":
		serveUntilSignal(l, rec, func(c net.Conn) { sinkSession(c, rec) })
	case "proxy":
		if *upstream == "" {
			fatal(fmt.Errorf("-upstream is required"))
		}
		serveUntilSignal(l, rec, func(c net.Conn) { serveProxy(c, *upstream, rec) })
	default:
		fatal(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}
