// Command tokenway-chat-go streams a chat completion from tokenway and prints the text as it arrives.
//
// The Go twin of clients/python/stream_chat.py: same flags, same output.
//
//	go run . --prompt "Tell me about gRPC." --max-tokens 32
//
// It prints the text of choice 0 chunk by chunk, then one line
// "[finish_reason=length usage=prompt:20 completion:12 total:32]". On a gRPC error it prints
// "error: NOT_FOUND: <message>" to stderr and exits with 1.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	tokenwayv1 "github.com/tokenway/tokenway/gen/go/tokenway/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// codeNames are the canonical status code names (grpc-go's String() says "NotFound").
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
	codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
	codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

// optionalFloat and optionalInt are flags that stay nil unless given ("unset" means model default).
type optionalFloat struct{ v *float32 }

func (o *optionalFloat) String() string {
	if o.v == nil {
		return ""
	}
	return strconv.FormatFloat(float64(*o.v), 'g', -1, 32)
}

func (o *optionalFloat) Set(s string) error {
	f, err := strconv.ParseFloat(s, 32)
	if err != nil {
		return err
	}
	o.v = proto.Float32(float32(f))
	return nil
}

type optionalInt struct{ v *int64 }

func (o *optionalInt) String() string {
	if o.v == nil {
		return ""
	}
	return strconv.FormatInt(*o.v, 10)
}

func (o *optionalInt) Set(s string) error {
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return err
	}
	o.v = proto.Int64(i)
	return nil
}

// requestID is a random (version 4) UUID, like the Python and Java clients send.
func requestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func main() {
	address := flag.String("address", "127.0.0.1:50051", "orchestrator host:port")
	model := flag.String("model", "tokenway-tiny", "model id")
	prompt := flag.String("prompt", "Tell me about the fast model server.", "the user message")
	maxTokens := flag.Int("max-tokens", 64, "upper bound on generated tokens")
	timeout := flag.Float64("timeout", 60, "deadline of the whole call in seconds")
	apiKey := flag.String("api-key", os.Getenv("TOKENWAY_API_KEY"), "sent as `authorization: Bearer <key>` (default: $TOKENWAY_API_KEY)")
	var temperature optionalFloat
	var seed optionalInt
	flag.Var(&temperature, "temperature", "sampling temperature, 0 is greedy (default: model's)")
	flag.Var(&seed, "seed", "sampling seed (default: none)")
	flag.Parse()
	os.Exit(run(*address, *model, *prompt, int32(*maxTokens), temperature.v, seed.v, *timeout, *apiKey))
}

func run(address, model, prompt string, maxTokens int32, temperature *float32, seed *int64, timeout float64, apiKey string) int {
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 2
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout*float64(time.Second)))
	defer cancel()
	md := metadata.Pairs("x-request-id", requestID())
	if apiKey != "" {
		md.Append("authorization", "Bearer "+apiKey)
	}
	ctx = metadata.NewOutgoingContext(ctx, md)

	req := &tokenwayv1.StreamChatCompletionRequest{
		Model:         model,
		Messages:      []*tokenwayv1.ChatRequestMessage{{Role: "user", Content: structpb.NewStringValue(prompt)}},
		MaxTokens:     proto.Int32(maxTokens),
		Temperature:   temperature,
		Seed:          seed,
		StreamOptions: &tokenwayv1.StreamOptions{IncludeUsage: proto.Bool(true)},
	}
	finishReason, usage, printed := "", &tokenwayv1.Usage{}, false
	stream, err := tokenwayv1.NewChatServiceClient(conn).StreamChatCompletion(ctx, req)
	for err == nil {
		var chunk *tokenwayv1.StreamChatCompletionResponse
		if chunk, err = stream.Recv(); err != nil {
			break
		}
		for _, choice := range chunk.GetChoices() {
			if choice.GetIndex() != 0 {
				continue
			}
			if text := choice.GetDelta().GetContent(); text != "" {
				os.Stdout.WriteString(text) // unbuffered: every chunk shows at once
				printed = true
			}
			if choice.FinishReason != nil {
				finishReason = choice.GetFinishReason()
			}
		}
		if chunk.GetUsage() != nil {
			usage = chunk.GetUsage()
		}
	}
	if !errors.Is(err, io.EOF) {
		if printed {
			fmt.Println() // end the partial text's line
		}
		s := status.Convert(err)
		fmt.Fprintf(os.Stderr, "error: %s: %s\n", codeNames[s.Code()], s.Message())
		return 1
	}
	fmt.Printf("\n[finish_reason=%s usage=prompt:%d completion:%d total:%d]\n",
		finishReason, usage.GetPromptTokens(), usage.GetCompletionTokens(), usage.GetTotalTokens())
	return 0
}
