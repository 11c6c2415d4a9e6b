package io.tokenway.inference.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * InferenceService runs the model: token ids in, token ids out.
 * </pre>
 */
@io.grpc.stub.annotations.GrpcGenerated
public final class InferenceServiceGrpc {

  private InferenceServiceGrpc() {}

  public static final java.lang.String SERVICE_NAME = "tokenway.inference.v1.InferenceService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<io.tokenway.inference.v1.GenerateRequest,
      io.tokenway.inference.v1.GenerateResponse> getGenerateMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Generate",
      requestType = io.tokenway.inference.v1.GenerateRequest.class,
      responseType = io.tokenway.inference.v1.GenerateResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<io.tokenway.inference.v1.GenerateRequest,
      io.tokenway.inference.v1.GenerateResponse> getGenerateMethod() {
    io.grpc.MethodDescriptor<io.tokenway.inference.v1.GenerateRequest, io.tokenway.inference.v1.GenerateResponse> getGenerateMethod;
    if ((getGenerateMethod = InferenceServiceGrpc.getGenerateMethod) == null) {
      synchronized (InferenceServiceGrpc.class) {
        if ((getGenerateMethod = InferenceServiceGrpc.getGenerateMethod) == null) {
          InferenceServiceGrpc.getGenerateMethod = getGenerateMethod =
              io.grpc.MethodDescriptor.<io.tokenway.inference.v1.GenerateRequest, io.tokenway.inference.v1.GenerateResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Generate"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.inference.v1.GenerateRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.inference.v1.GenerateResponse.getDefaultInstance()))
              .setSchemaDescriptor(new InferenceServiceMethodDescriptorSupplier("Generate"))
              .build();
        }
      }
    }
    return getGenerateMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.inference.v1.AbortRequest,
      io.tokenway.inference.v1.AbortResponse> getAbortMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Abort",
      requestType = io.tokenway.inference.v1.AbortRequest.class,
      responseType = io.tokenway.inference.v1.AbortResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.tokenway.inference.v1.AbortRequest,
      io.tokenway.inference.v1.AbortResponse> getAbortMethod() {
    io.grpc.MethodDescriptor<io.tokenway.inference.v1.AbortRequest, io.tokenway.inference.v1.AbortResponse> getAbortMethod;
    if ((getAbortMethod = InferenceServiceGrpc.getAbortMethod) == null) {
      synchronized (InferenceServiceGrpc.class) {
        if ((getAbortMethod = InferenceServiceGrpc.getAbortMethod) == null) {
          InferenceServiceGrpc.getAbortMethod = getAbortMethod =
              io.grpc.MethodDescriptor.<io.tokenway.inference.v1.AbortRequest, io.tokenway.inference.v1.AbortResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Abort"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.inference.v1.AbortRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.inference.v1.AbortResponse.getDefaultInstance()))
              .setSchemaDescriptor(new InferenceServiceMethodDescriptorSupplier("Abort"))
              .build();
        }
      }
    }
    return getAbortMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.inference.v1.GetModelInfoRequest,
      io.tokenway.inference.v1.GetModelInfoResponse> getGetModelInfoMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetModelInfo",
      requestType = io.tokenway.inference.v1.GetModelInfoRequest.class,
      responseType = io.tokenway.inference.v1.GetModelInfoResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.tokenway.inference.v1.GetModelInfoRequest,
      io.tokenway.inference.v1.GetModelInfoResponse> getGetModelInfoMethod() {
    io.grpc.MethodDescriptor<io.tokenway.inference.v1.GetModelInfoRequest, io.tokenway.inference.v1.GetModelInfoResponse> getGetModelInfoMethod;
    if ((getGetModelInfoMethod = InferenceServiceGrpc.getGetModelInfoMethod) == null) {
      synchronized (InferenceServiceGrpc.class) {
        if ((getGetModelInfoMethod = InferenceServiceGrpc.getGetModelInfoMethod) == null) {
          InferenceServiceGrpc.getGetModelInfoMethod = getGetModelInfoMethod =
              io.grpc.MethodDescriptor.<io.tokenway.inference.v1.GetModelInfoRequest, io.tokenway.inference.v1.GetModelInfoResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetModelInfo"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.inference.v1.GetModelInfoRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.inference.v1.GetModelInfoResponse.getDefaultInstance()))
              .setSchemaDescriptor(new InferenceServiceMethodDescriptorSupplier("GetModelInfo"))
              .build();
        }
      }
    }
    return getGetModelInfoMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.tokenway.inference.v1.GetLoadRequest,
      io.tokenway.inference.v1.GetLoadResponse> getGetLoadMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetLoad",
      requestType = io.tokenway.inference.v1.GetLoadRequest.class,
      responseType = io.tokenway.inference.v1.GetLoadResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.tokenway.inference.v1.GetLoadRequest,
      io.tokenway.inference.v1.GetLoadResponse> getGetLoadMethod() {
    io.grpc.MethodDescriptor<io.tokenway.inference.v1.GetLoadRequest, io.tokenway.inference.v1.GetLoadResponse> getGetLoadMethod;
    if ((getGetLoadMethod = InferenceServiceGrpc.getGetLoadMethod) == null) {
      synchronized (InferenceServiceGrpc.class) {
        if ((getGetLoadMethod = InferenceServiceGrpc.getGetLoadMethod) == null) {
          InferenceServiceGrpc.getGetLoadMethod = getGetLoadMethod =
              io.grpc.MethodDescriptor.<io.tokenway.inference.v1.GetLoadRequest, io.tokenway.inference.v1.GetLoadResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetLoad"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.inference.v1.GetLoadRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.tokenway.inference.v1.GetLoadResponse.getDefaultInstance()))
              .setSchemaDescriptor(new InferenceServiceMethodDescriptorSupplier("GetLoad"))
              .build();
        }
      }
    }
    return getGetLoadMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static InferenceServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<InferenceServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<InferenceServiceStub>() {
        @java.lang.Override
        public InferenceServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new InferenceServiceStub(channel, callOptions);
        }
      };
    return InferenceServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports all types of calls on the service
   */
  public static InferenceServiceBlockingV2Stub newBlockingV2Stub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<InferenceServiceBlockingV2Stub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<InferenceServiceBlockingV2Stub>() {
        @java.lang.Override
        public InferenceServiceBlockingV2Stub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new InferenceServiceBlockingV2Stub(channel, callOptions);
        }
      };
    return InferenceServiceBlockingV2Stub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static InferenceServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<InferenceServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<InferenceServiceBlockingStub>() {
        @java.lang.Override
        public InferenceServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new InferenceServiceBlockingStub(channel, callOptions);
        }
      };
    return InferenceServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static InferenceServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<InferenceServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<InferenceServiceFutureStub>() {
        @java.lang.Override
        public InferenceServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new InferenceServiceFutureStub(channel, callOptions);
        }
      };
    return InferenceServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * InferenceService runs the model: token ids in, token ids out.
   * </pre>
   */
  public interface AsyncService {

    /**
     * <pre>
     * Generate streams the tokens of one sequence. Several tokens ride in one
     * message when more than one is ready. Cancelling the call aborts it.
     * </pre>
     */
    default void generate(io.tokenway.inference.v1.GenerateRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.inference.v1.GenerateResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGenerateMethod(), responseObserver);
    }

    /**
     * <pre>
     * Abort removes requests from the batch at the next step.
     * </pre>
     */
    default void abort(io.tokenway.inference.v1.AbortRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.inference.v1.AbortResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getAbortMethod(), responseObserver);
    }

    /**
     * <pre>
     * GetModelInfo describes the served model.
     * </pre>
     */
    default void getModelInfo(io.tokenway.inference.v1.GetModelInfoRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.inference.v1.GetModelInfoResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetModelInfoMethod(), responseObserver);
    }

    /**
     * <pre>
     * GetLoad reports how busy the engine is.
     * </pre>
     */
    default void getLoad(io.tokenway.inference.v1.GetLoadRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.inference.v1.GetLoadResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetLoadMethod(), responseObserver);
    }
  }

  /**
   * Base class for the server implementation of the service InferenceService.
   * <pre>
   * InferenceService runs the model: token ids in, token ids out.
   * </pre>
   */
  public static abstract class InferenceServiceImplBase
      implements io.grpc.BindableService, AsyncService {

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return InferenceServiceGrpc.bindService(this);
    }
  }

  /**
   * A stub to allow clients to do asynchronous rpc calls to service InferenceService.
   * <pre>
   * InferenceService runs the model: token ids in, token ids out.
   * </pre>
   */
  public static final class InferenceServiceStub
      extends io.grpc.stub.AbstractAsyncStub<InferenceServiceStub> {
    private InferenceServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected InferenceServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new InferenceServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * Generate streams the tokens of one sequence. Several tokens ride in one
     * message when more than one is ready. Cancelling the call aborts it.
     * </pre>
     */
    public void generate(io.tokenway.inference.v1.GenerateRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.inference.v1.GenerateResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getGenerateMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Abort removes requests from the batch at the next step.
     * </pre>
     */
    public void abort(io.tokenway.inference.v1.AbortRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.inference.v1.AbortResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getAbortMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * GetModelInfo describes the served model.
     * </pre>
     */
    public void getModelInfo(io.tokenway.inference.v1.GetModelInfoRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.inference.v1.GetModelInfoResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetModelInfoMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * GetLoad reports how busy the engine is.
     * </pre>
     */
    public void getLoad(io.tokenway.inference.v1.GetLoadRequest request,
        io.grpc.stub.StreamObserver<io.tokenway.inference.v1.GetLoadResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetLoadMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * A stub to allow clients to do synchronous rpc calls to service InferenceService.
   * <pre>
   * InferenceService runs the model: token ids in, token ids out.
   * </pre>
   */
  public static final class InferenceServiceBlockingV2Stub
      extends io.grpc.stub.AbstractBlockingStub<InferenceServiceBlockingV2Stub> {
    private InferenceServiceBlockingV2Stub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected InferenceServiceBlockingV2Stub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new InferenceServiceBlockingV2Stub(channel, callOptions);
    }

    /**
     * <pre>
     * Generate streams the tokens of one sequence. Several tokens ride in one
     * message when more than one is ready. Cancelling the call aborts it.
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<?, io.tokenway.inference.v1.GenerateResponse>
        generate(io.tokenway.inference.v1.GenerateRequest request) {
      return io.grpc.stub.ClientCalls.blockingV2ServerStreamingCall(
          getChannel(), getGenerateMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Abort removes requests from the batch at the next step.
     * </pre>
     */
    public io.tokenway.inference.v1.AbortResponse abort(io.tokenway.inference.v1.AbortRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getAbortMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GetModelInfo describes the served model.
     * </pre>
     */
    public io.tokenway.inference.v1.GetModelInfoResponse getModelInfo(io.tokenway.inference.v1.GetModelInfoRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getGetModelInfoMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GetLoad reports how busy the engine is.
     * </pre>
     */
    public io.tokenway.inference.v1.GetLoadResponse getLoad(io.tokenway.inference.v1.GetLoadRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getGetLoadMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do limited synchronous rpc calls to service InferenceService.
   * <pre>
   * InferenceService runs the model: token ids in, token ids out.
   * </pre>
   */
  public static final class InferenceServiceBlockingStub
      extends io.grpc.stub.AbstractBlockingStub<InferenceServiceBlockingStub> {
    private InferenceServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected InferenceServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new InferenceServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * Generate streams the tokens of one sequence. Several tokens ride in one
     * message when more than one is ready. Cancelling the call aborts it.
     * </pre>
     */
    public java.util.Iterator<io.tokenway.inference.v1.GenerateResponse> generate(
        io.tokenway.inference.v1.GenerateRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getGenerateMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Abort removes requests from the batch at the next step.
     * </pre>
     */
    public io.tokenway.inference.v1.AbortResponse abort(io.tokenway.inference.v1.AbortRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getAbortMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GetModelInfo describes the served model.
     * </pre>
     */
    public io.tokenway.inference.v1.GetModelInfoResponse getModelInfo(io.tokenway.inference.v1.GetModelInfoRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetModelInfoMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GetLoad reports how busy the engine is.
     * </pre>
     */
    public io.tokenway.inference.v1.GetLoadResponse getLoad(io.tokenway.inference.v1.GetLoadRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetLoadMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do ListenableFuture-style rpc calls to service InferenceService.
   * <pre>
   * InferenceService runs the model: token ids in, token ids out.
   * </pre>
   */
  public static final class InferenceServiceFutureStub
      extends io.grpc.stub.AbstractFutureStub<InferenceServiceFutureStub> {
    private InferenceServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected InferenceServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new InferenceServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * Abort removes requests from the batch at the next step.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.tokenway.inference.v1.AbortResponse> abort(
        io.tokenway.inference.v1.AbortRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getAbortMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * GetModelInfo describes the served model.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.tokenway.inference.v1.GetModelInfoResponse> getModelInfo(
        io.tokenway.inference.v1.GetModelInfoRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetModelInfoMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * GetLoad reports how busy the engine is.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.tokenway.inference.v1.GetLoadResponse> getLoad(
        io.tokenway.inference.v1.GetLoadRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetLoadMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_GENERATE = 0;
  private static final int METHODID_ABORT = 1;
  private static final int METHODID_GET_MODEL_INFO = 2;
  private static final int METHODID_GET_LOAD = 3;

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
        case METHODID_GENERATE:
          serviceImpl.generate((io.tokenway.inference.v1.GenerateRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.inference.v1.GenerateResponse>) responseObserver);
          break;
        case METHODID_ABORT:
          serviceImpl.abort((io.tokenway.inference.v1.AbortRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.inference.v1.AbortResponse>) responseObserver);
          break;
        case METHODID_GET_MODEL_INFO:
          serviceImpl.getModelInfo((io.tokenway.inference.v1.GetModelInfoRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.inference.v1.GetModelInfoResponse>) responseObserver);
          break;
        case METHODID_GET_LOAD:
          serviceImpl.getLoad((io.tokenway.inference.v1.GetLoadRequest) request,
              (io.grpc.stub.StreamObserver<io.tokenway.inference.v1.GetLoadResponse>) responseObserver);
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
          getGenerateMethod(),
          io.grpc.stub.ServerCalls.asyncServerStreamingCall(
            new MethodHandlers<
              io.tokenway.inference.v1.GenerateRequest,
              io.tokenway.inference.v1.GenerateResponse>(
                service, METHODID_GENERATE)))
        .addMethod(
          getAbortMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              io.tokenway.inference.v1.AbortRequest,
              io.tokenway.inference.v1.AbortResponse>(
                service, METHODID_ABORT)))
        .addMethod(
          getGetModelInfoMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              io.tokenway.inference.v1.GetModelInfoRequest,
              io.tokenway.inference.v1.GetModelInfoResponse>(
                service, METHODID_GET_MODEL_INFO)))
        .addMethod(
          getGetLoadMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              io.tokenway.inference.v1.GetLoadRequest,
              io.tokenway.inference.v1.GetLoadResponse>(
                service, METHODID_GET_LOAD)))
        .build();
  }

  private static abstract class InferenceServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    InferenceServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return io.tokenway.inference.v1.InferenceProto.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("InferenceService");
    }
  }

  private static final class InferenceServiceFileDescriptorSupplier
      extends InferenceServiceBaseDescriptorSupplier {
    InferenceServiceFileDescriptorSupplier() {}
  }

  private static final class InferenceServiceMethodDescriptorSupplier
      extends InferenceServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final java.lang.String methodName;

    InferenceServiceMethodDescriptorSupplier(java.lang.String methodName) {
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
      synchronized (InferenceServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new InferenceServiceFileDescriptorSupplier())
              .addMethod(getGenerateMethod())
              .addMethod(getAbortMethod())
              .addMethod(getGetModelInfoMethod())
              .addMethod(getGetLoadMethod())
              .build();
        }
      }
    }
    return result;
  }
}
