package io.tokenway.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * CompletionService continues raw prompts, without a chat template, shaped
 * like OpenAI's legacy /v1/completions.
 * </pre>
 */
@io.grpc.stub.annotations.GrpcGenerated
public final class CompletionServiceGrpc {

  private CompletionServiceGrpc() {}

  public static final java.lang.String SERVICE_NAME = "tokenway.v1.CompletionService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<io.tokenway.v1.CreateCompletionRequest,
      io.tokenway.v1.CreateCompletionResponse> getCreateCompletionMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "CreateCompletion",
      requestType = io.tokenway.v1.CreateCompletionRequest.class,
      responseType = io.tokenway.v1.CreateCompletionResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.tokenway.v1.CreateCompletionRequest,
      io.tokenway.v1.CreateCompletionResponse> getCreateCompletionMethod() {
    io.grpc.MethodDescriptor<io.tokenway.v1.CreateCompletionRequest, io.tokenway.v1.CreateCompletionResponse> getCreateCompletionMethod;
    if ((getCreateCompletionMethod = CompletionServiceGrpc.getCreateCompletionMethod) == null) {
      synchronized (CompletionServiceGrpc.class) {
        if ((getCreateCompletionMethod = CompletionServiceGrpc.getCreateCompletionMethod) == null) {
          CompletionServiceGrpc.getCreateCompletionMethod = getCreateCompletionMethod =
              io.grpc.MethodDescriptor.<io.tokenway.v1.CreateCompletionRequest, io.tokenway.v1.CreateCompletionResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "CreateCompletion"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.v1.CreateCompletionRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.v1.CreateCompletionResponse.getDefaultInstance()))
              .setSchemaDescriptor(new CompletionServiceMethodDescriptorSupplier("CreateCompletion"))
              .build();
        }
      }
    }
    return getCreateCompletionMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.v1.StreamCompletionRequest,
      io.tokenway.v1.StreamCompletionResponse> getStreamCompletionMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "StreamCompletion",
      requestType = io.tokenway.v1.StreamCompletionRequest.class,
      responseType = io.tokenway.v1.StreamCompletionResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<io.tokenway.v1.StreamCompletionRequest,
      io.tokenway.v1.StreamCompletionResponse> getStreamCompletionMethod() {
    io.grpc.MethodDescriptor<io.tokenway.v1.StreamCompletionRequest, io.tokenway.v1.StreamCompletionResponse> getStreamCompletionMethod;
    if ((getStreamCompletionMethod = CompletionServiceGrpc.getStreamCompletionMethod) == null) {
      synchronized (CompletionServiceGrpc.class) {
        if ((getStreamCompletionMethod = CompletionServiceGrpc.getStreamCompletionMethod) == null) {
          CompletionServiceGrpc.getStreamCompletionMethod = getStreamCompletionMethod =
              io.grpc.MethodDescriptor.<io.tokenway.v1.StreamCompletionRequest, io.tokenway.v1.StreamCompletionResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "StreamCompletion"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.v1.StreamCompletionRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.v1.StreamCompletionResponse.getDefaultInstance()))
              .setSchemaDescriptor(new CompletionServiceMethodDescriptorSupplier("StreamCompletion"))
              .build();
        }
      }
    }
    return getStreamCompletionMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.v1.StreamCompletionEventsRequest,
      com.google.api.HttpBody> getStreamCompletionEventsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "StreamCompletionEvents",
      requestType = io.tokenway.v1.StreamCompletionEventsRequest.class,
      responseType = com.google.api.HttpBody.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<io.tokenway.v1.StreamCompletionEventsRequest,
      com.google.api.HttpBody> getStreamCompletionEventsMethod() {
    io.grpc.MethodDescriptor<io.tokenway.v1.StreamCompletionEventsRequest, com.google.api.HttpBody> getStreamCompletionEventsMethod;
    if ((getStreamCompletionEventsMethod = CompletionServiceGrpc.getStreamCompletionEventsMethod) == null) {
      synchronized (CompletionServiceGrpc.class) {
        if ((getStreamCompletionEventsMethod = CompletionServiceGrpc.getStreamCompletionEventsMethod) == null) {
          CompletionServiceGrpc.getStreamCompletionEventsMethod = getStreamCompletionEventsMethod =
              io.grpc.MethodDescriptor.<io.tokenway.v1.StreamCompletionEventsRequest, com.google.api.HttpBody>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "StreamCompletionEvents"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.v1.StreamCompletionEventsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.google.api.HttpBody.getDefaultInstance()))
              .setSchemaDescriptor(new CompletionServiceMethodDescriptorSupplier("StreamCompletionEvents"))
              .build();
        }
      }
    }
    return getStreamCompletionEventsMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static CompletionServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<CompletionServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<CompletionServiceStub>() {
        @java.lang.Override
        public CompletionServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new CompletionServiceStub(channel, callOptions);
        }
      };
    return CompletionServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports all types of calls on the service
   */
  public static CompletionServiceBlockingV2Stub newBlockingV2Stub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<CompletionServiceBlockingV2Stub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<CompletionServiceBlockingV2Stub>() {
        @java.lang.Override
        public CompletionServiceBlockingV2Stub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new CompletionServiceBlockingV2Stub(channel, callOptions);
        }
      };
    return CompletionServiceBlockingV2Stub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static CompletionServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<CompletionServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<CompletionServiceBlockingStub>() {
        @java.lang.Override
        public CompletionServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new CompletionServiceBlockingStub(channel, callOptions);
        }
      };
    return CompletionServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static CompletionServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<CompletionServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<CompletionServiceFutureStub>() {
        @java.lang.Override
        public CompletionServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new CompletionServiceFutureStub(channel, callOptions);
        }
      };
    return CompletionServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * CompletionService continues raw prompts, without a chat template, shaped
   * like OpenAI's legacy /v1/completions.
   * </pre>
   */
  public interface AsyncService {

    /**
     * <pre>
     * CreateCompletion continues each prompt and answers once.
     * </pre>
     */
    default void createCompletion(io.tokenway.v1.CreateCompletionRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.v1.CreateCompletionResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getCreateCompletionMethod(), responseObserver);
    }

    /**
     * <pre>
     * StreamCompletion is CreateCompletion streamed as text deltas.
     * </pre>
     */
    default void streamCompletion(io.tokenway.v1.StreamCompletionRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.v1.StreamCompletionResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getStreamCompletionMethod(), responseObserver);
    }

    /**
     * <pre>
     * StreamCompletionEvents is StreamCompletion for the REST edge, as
     * Server-Sent Events written by the server (see
     * ChatService.StreamChatCompletionEvents). Envoy routes `"stream": true`
     * here.
     * buf:lint:ignore RPC_RESPONSE_STANDARD_NAME
     * buf:lint:ignore RPC_REQUEST_RESPONSE_UNIQUE
     * </pre>
     */
    default void streamCompletionEvents(io.tokenway.v1.StreamCompletionEventsRequest request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getStreamCompletionEventsMethod(), responseObserver);
    }
  }

  /**
   * Base class for the server implementation of the service CompletionService.
   * <pre>
   * CompletionService continues raw prompts, without a chat template, shaped
   * like OpenAI's legacy /v1/completions.
   * </pre>
   */
  public static abstract class CompletionServiceImplBase
      implements io.grpc.BindableService, AsyncService {

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return CompletionServiceGrpc.bindService(this);
    }
  }

  /**
   * A stub to allow clients to do asynchronous rpc calls to service CompletionService.
   * <pre>
   * CompletionService continues raw prompts, without a chat template, shaped
   * like OpenAI's legacy /v1/completions.
   * </pre>
   */
  public static final class CompletionServiceStub
      extends io.grpc.stub.AbstractAsyncStub<CompletionServiceStub> {
    private CompletionServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected CompletionServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new CompletionServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * CreateCompletion continues each prompt and answers once.
     * </pre>
     */
    public void createCompletion(io.tokenway.v1.CreateCompletionRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.v1.CreateCompletionResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getCreateCompletionMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * StreamCompletion is CreateCompletion streamed as text deltas.
     * </pre>
     */
    public void streamCompletion(io.tokenway.v1.StreamCompletionRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.v1.StreamCompletionResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getStreamCompletionMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * StreamCompletionEvents is StreamCompletion for the REST edge, as
     * Server-Sent Events written by the server (see
     * ChatService.StreamChatCompletionEvents). Envoy routes `"stream": true`
     * here.
     * buf:lint:ignore RPC_RESPONSE_STANDARD_NAME
     * buf:lint:ignore RPC_REQUEST_RESPONSE_UNIQUE
     * </pre>
     */
    public void streamCompletionEvents(io.tokenway.v1.StreamCompletionEventsRequest request,
        io.grpc.stub.StreamObserver<com.google.api.HttpBody> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getStreamCompletionEventsMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * A stub to allow clients to do synchronous rpc calls to service CompletionService.
   * <pre>
   * CompletionService continues raw prompts, without a chat template, shaped
   * like OpenAI's legacy /v1/completions.
   * </pre>
   */
  public static final class CompletionServiceBlockingV2Stub
      extends io.grpc.stub.AbstractBlockingStub<CompletionServiceBlockingV2Stub> {
    private CompletionServiceBlockingV2Stub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected CompletionServiceBlockingV2Stub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new CompletionServiceBlockingV2Stub(channel, callOptions);
    }

    /**
     * <pre>
     * CreateCompletion continues each prompt and answers once.
     * </pre>
     */
    public io.tokenway.v1.CreateCompletionResponse createCompletion(io.tokenway.v1.CreateCompletionRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getCreateCompletionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * StreamCompletion is CreateCompletion streamed as text deltas.
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<?, io.tokenway.v1.StreamCompletionResponse>
        streamCompletion(io.tokenway.v1.StreamCompletionRequest request) {
      return io.grpc.stub.ClientCalls.blockingV2ServerStreamingCall(
          getChannel(), getStreamCompletionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * StreamCompletionEvents is StreamCompletion for the REST edge, as
     * Server-Sent Events written by the server (see
     * ChatService.StreamChatCompletionEvents). Envoy routes `"stream": true`
     * here.
     * buf:lint:ignore RPC_RESPONSE_STANDARD_NAME
     * buf:lint:ignore RPC_REQUEST_RESPONSE_UNIQUE
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<?, com.google.api.HttpBody>
        streamCompletionEvents(io.tokenway.v1.StreamCompletionEventsRequest request) {
      return io.grpc.stub.ClientCalls.blockingV2ServerStreamingCall(
          getChannel(), getStreamCompletionEventsMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do limited synchronous rpc calls to service CompletionService.
   * <pre>
   * CompletionService continues raw prompts, without a chat template, shaped
   * like OpenAI's legacy /v1/completions.
   * </pre>
   */
  public static final class CompletionServiceBlockingStub
      extends io.grpc.stub.AbstractBlockingStub<CompletionServiceBlockingStub> {
    private CompletionServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected CompletionServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new CompletionServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * CreateCompletion continues each prompt and answers once.
     * </pre>
     */
    public io.tokenway.v1.CreateCompletionResponse createCompletion(io.tokenway.v1.CreateCompletionRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getCreateCompletionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * StreamCompletion is CreateCompletion streamed as text deltas.
     * </pre>
     */
    public java.util.Iterator<io.tokenway.v1.StreamCompletionResponse> streamCompletion(
        io.tokenway.v1.StreamCompletionRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getStreamCompletionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * StreamCompletionEvents is StreamCompletion for the REST edge, as
     * Server-Sent Events written by the server (see
     * ChatService.StreamChatCompletionEvents). Envoy routes `"stream": true`
     * here.
     * buf:lint:ignore RPC_RESPONSE_STANDARD_NAME
     * buf:lint:ignore RPC_REQUEST_RESPONSE_UNIQUE
     * </pre>
     */
    public java.util.Iterator<com.google.api.HttpBody> streamCompletionEvents(
        io.tokenway.v1.StreamCompletionEventsRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getStreamCompletionEventsMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do ListenableFuture-style rpc calls to service CompletionService.
   * <pre>
   * CompletionService continues raw prompts, without a chat template, shaped
   * like OpenAI's legacy /v1/completions.
   * </pre>
   */
  public static final class CompletionServiceFutureStub
      extends io.grpc.stub.AbstractFutureStub<CompletionServiceFutureStub> {
    private CompletionServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected CompletionServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new CompletionServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * CreateCompletion continues each prompt and answers once.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.tokenway.v1.CreateCompletionResponse> createCompletion(
        io.tokenway.v1.CreateCompletionRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getCreateCompletionMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_CREATE_COMPLETION = 0;
  private static final int METHODID_STREAM_COMPLETION = 1;
  private static final int METHODID_STREAM_COMPLETION_EVENTS = 2;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final AsyncService serviceImpl;
    private final int methodId;

    MethodHandlers(AsyncService serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_CREATE_COMPLETION:
          serviceImpl.createCompletion((io.tokenway.v1.CreateCompletionRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.v1.CreateCompletionResponse>) responseObserver);
          break;
        case METHODID_STREAM_COMPLETION:
          serviceImpl.streamCompletion((io.tokenway.v1.StreamCompletionRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.v1.StreamCompletionResponse>) responseObserver);
          break;
        case METHODID_STREAM_COMPLETION_EVENTS:
          serviceImpl.streamCompletionEvents((io.tokenway.v1.StreamCompletionEventsRequest) request,
              (io.grpc.stub.StreamObserver<com.google.api.HttpBody>) responseObserver);
          break;
        default:
          throw new AssertionError();
      }
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public io.grpc.stub.StreamObserver<Req> invoke(
        io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        default:
          throw new AssertionError();
      }
    }
  }

  public static final io.grpc.ServerServiceDefinition bindService(AsyncService service) {
    return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
        .addMethod(
          getCreateCompletionMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              io.tokenway.v1.CreateCompletionRequest,
              io.tokenway.v1.CreateCompletionResponse>(
                service, METHODID_CREATE_COMPLETION)))
        .addMethod(
          getStreamCompletionMethod(),
          io.grpc.stub.ServerCalls.asyncServerStreamingCall(
            new MethodHandlers<
              io.tokenway.v1.StreamCompletionRequest,
              io.tokenway.v1.StreamCompletionResponse>(
                service, METHODID_STREAM_COMPLETION)))
        .addMethod(
          getStreamCompletionEventsMethod(),
          io.grpc.stub.ServerCalls.asyncServerStreamingCall(
            new MethodHandlers<
              io.tokenway.v1.StreamCompletionEventsRequest,
              com.google.api.HttpBody>(
                service, METHODID_STREAM_COMPLETION_EVENTS)))
        .build();
  }

  private static abstract class CompletionServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    CompletionServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return io.tokenway.v1.CompletionProto.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("CompletionService");
    }
  }

  private static final class CompletionServiceFileDescriptorSupplier
      extends CompletionServiceBaseDescriptorSupplier {
    CompletionServiceFileDescriptorSupplier() {}
  }

  private static final class CompletionServiceMethodDescriptorSupplier
      extends CompletionServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final java.lang.String methodName;

    CompletionServiceMethodDescriptorSupplier(java.lang.String methodName) {
      this.methodName = methodName;
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.MethodDescriptor getMethodDescriptor() {
      return getServiceDescriptor().findMethodByName(methodName);
    }
  }

  private static volatile io.grpc.ServiceDescriptor serviceDescriptor;

  public static io.grpc.ServiceDescriptor getServiceDescriptor() {
    io.grpc.ServiceDescriptor result = serviceDescriptor;
    if (result == null) {
      synchronized (CompletionServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new CompletionServiceFileDescriptorSupplier())
              .addMethod(getCreateCompletionMethod())
              .addMethod(getStreamCompletionMethod())
              .addMethod(getStreamCompletionEventsMethod())
              .build();
        }
      }
    }
    return result;
  }
}
