package io.tokenway.examples;

import com.google.protobuf.Value;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import io.tokenway.v1.ChatChunkChoice;
import io.tokenway.v1.ChatRequestMessage;
import io.tokenway.v1.ChatServiceGrpc;
import io.tokenway.v1.StreamChatCompletionRequest;
import io.tokenway.v1.StreamChatCompletionResponse;
import io.tokenway.v1.StreamOptions;
import io.tokenway.v1.Usage;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * Streams a chat completion from tokenway and prints the text as it arrives.
 *
 * <p>The Java twin of clients/python/stream_chat.py: same flags, same output.
 *
 * <pre>java -jar target/tokenway-chat-java.jar --prompt "Tell me about gRPC." --max-tokens 32</pre>
 *
 * <p>Prints the text of choice 0 chunk by chunk, then one line {@code [finish_reason=length
 * usage=prompt:20 completion:12 total:32]}. On a gRPC error it prints {@code error: NOT_FOUND:
 * <message>} to stderr and exits with 1.
 */
public final class StreamChat {
  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  private static final Metadata.Key<String> REQUEST_ID =
      Metadata.Key.of("x-request-id", Metadata.ASCII_STRING_MARSHALLER);

  private static final String USAGE =
      "usage: tokenway-chat-java [--address HOST:PORT] [--model ID] [--prompt TEXT] [--max-tokens N]\n"
          + "                          [--temperature T] [--seed S] [--timeout SECONDS] [--api-key KEY]";

  private StreamChat() {}

  public static void main(String[] argv) throws InterruptedException {
    Map<String, String> flags = new HashMap<>();
    flags.put("address", "127.0.0.1:50051");
    flags.put("model", "tokenway-tiny");
    flags.put("prompt", "Tell me about the fast model server.");
    flags.put("max-tokens", "64");
    flags.put("timeout", "60");
    String envKey = System.getenv("TOKENWAY_API_KEY");
    flags.put("api-key", envKey == null ? "" : envKey);
    if (!parse(argv, flags)) {
      System.err.println(USAGE);
      System.exit(2);
    }
    System.exit(run(flags));
  }

  /** Reads {@code --name value} and {@code --name=value} pairs into flags; false on anything else. */
  private static boolean parse(String[] argv, Map<String, String> flags) {
    for (int i = 0; i < argv.length; i++) {
      String arg = argv[i];
      if (!arg.startsWith("-")) {
        return false;
      }
      String name = arg.replaceFirst("^--?", "");
      String value;
      int eq = name.indexOf('=');
      if (eq >= 0) {
        value = name.substring(eq + 1);
        name = name.substring(0, eq);
      } else if (i + 1 < argv.length) {
        value = argv[++i];
      } else {
        return false;
      }
      if (!name.equals("temperature") && !name.equals("seed") && !flags.containsKey(name)) {
        System.err.println("unknown flag --" + name);
        return false;
      }
      flags.put(name, value);
    }
    return true;
  }

  private static int run(Map<String, String> flags) throws InterruptedException {
    StreamChatCompletionRequest.Builder req =
        StreamChatCompletionRequest.newBuilder()
            .setModel(flags.get("model"))
            .addMessages(
                ChatRequestMessage.newBuilder()
                    .setRole("user")
                    .setContent(Value.newBuilder().setStringValue(flags.get("prompt"))))
            .setMaxTokens(Integer.parseInt(flags.get("max-tokens")))
            .setStreamOptions(StreamOptions.newBuilder().setIncludeUsage(true));
    // optional fields: left unset mean "model default"
    if (flags.containsKey("temperature")) {
      req.setTemperature(Float.parseFloat(flags.get("temperature")));
    }
    if (flags.containsKey("seed")) {
      req.setSeed(Long.parseLong(flags.get("seed")));
    }

    Metadata md = new Metadata();
    md.put(REQUEST_ID, UUID.randomUUID().toString());
    if (!flags.get("api-key").isEmpty()) {
      md.put(AUTHORIZATION, "Bearer " + flags.get("api-key"));
    }
    long timeoutMs = (long) (Double.parseDouble(flags.get("timeout")) * 1000);

    // UTF-8 whatever the locale; flushed by hand after every chunk
    PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
    ManagedChannel channel = ManagedChannelBuilder.forTarget(flags.get("address")).usePlaintext().build();
    String finishReason = "";
    Usage usage = Usage.getDefaultInstance();
    boolean printed = false;
    try {
      ChatServiceGrpc.ChatServiceBlockingStub stub =
          ChatServiceGrpc.newBlockingStub(channel)
              .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(md))
              .withDeadlineAfter(timeoutMs, TimeUnit.MILLISECONDS);
      Iterator<StreamChatCompletionResponse> chunks = stub.streamChatCompletion(req.build());
      while (chunks.hasNext()) {
        StreamChatCompletionResponse chunk = chunks.next();
        for (ChatChunkChoice choice : chunk.getChoicesList()) {
          if (choice.getIndex() != 0) {
            continue;
          }
          if (!choice.getDelta().getContent().isEmpty()) {
            out.print(choice.getDelta().getContent());
            out.flush();
            printed = true;
          }
          if (choice.hasFinishReason()) {
            finishReason = choice.getFinishReason();
          }
        }
        if (chunk.hasUsage()) {
          usage = chunk.getUsage();
        }
      }
    } catch (StatusRuntimeException e) {
      if (printed) {
        out.println(); // end the partial text's line
        out.flush();
      }
      Status s = e.getStatus();
      System.err.println("error: " + s.getCode().name() + ": " + (s.getDescription() == null ? "" : s.getDescription()));
      return 1;
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    out.printf(
        "%n[finish_reason=%s usage=prompt:%d completion:%d total:%d]%n",
        finishReason, usage.getPromptTokens(), usage.getCompletionTokens(), usage.getTotalTokens());
    out.flush();
    return 0;
  }
}
