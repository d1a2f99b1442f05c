//! The names of CUDA's result codes, and the failed calls as the errors family takes them.

/// The runtime's `cudaError_t` names of the codes a program meets (CUDA 12's values).
const RUNTIME: [(u32, &str); 32] = [
    (0, "cudaSuccess"),
    (1, "cudaErrorInvalidValue"),
    (2, "cudaErrorMemoryAllocation"),
    (3, "cudaErrorInitializationError"),
    (4, "cudaErrorCudartUnloading"),
    (9, "cudaErrorInvalidConfiguration"),
    (12, "cudaErrorInvalidPitchValue"),
    (13, "cudaErrorInvalidSymbol"),
    (16, "cudaErrorInvalidHostPointer"),
    (17, "cudaErrorInvalidDevicePointer"),
    (21, "cudaErrorInvalidMemcpyDirection"),
    (34, "cudaErrorStubLibrary"),
    (35, "cudaErrorInsufficientDriver"),
    (36, "cudaErrorCallRequiresNewerDriver"),
    (46, "cudaErrorDevicesUnavailable"),
    (98, "cudaErrorInvalidDeviceFunction"),
    (100, "cudaErrorNoDevice"),
    (101, "cudaErrorInvalidDevice"),
    (200, "cudaErrorInvalidKernelImage"),
    (201, "cudaErrorDeviceUninitialized"),
    (209, "cudaErrorNoKernelImageForDevice"),
    (214, "cudaErrorECCUncorrectable"),
    (400, "cudaErrorInvalidResourceHandle"),
    (500, "cudaErrorSymbolNotFound"),
    (600, "cudaErrorNotReady"),
    (700, "cudaErrorIllegalAddress"),
    (701, "cudaErrorLaunchOutOfResources"),
    (702, "cudaErrorLaunchTimeout"),
    (710, "cudaErrorAssert"),
    (719, "cudaErrorLaunchFailure"),
    (720, "cudaErrorCooperativeLaunchTooLarge"),
    (999, "cudaErrorUnknown"),
];

/// The driver's `CUresult` names.
const DRIVER: [(u32, &str); 26] = [
    (0, "CUDA_SUCCESS"),
    (1, "CUDA_ERROR_INVALID_VALUE"),
    (2, "CUDA_ERROR_OUT_OF_MEMORY"),
    (3, "CUDA_ERROR_NOT_INITIALIZED"),
    (4, "CUDA_ERROR_DEINITIALIZED"),
    (34, "CUDA_ERROR_STUB_LIBRARY"),
    (46, "CUDA_ERROR_DEVICE_UNAVAILABLE"),
    (100, "CUDA_ERROR_NO_DEVICE"),
    (101, "CUDA_ERROR_INVALID_DEVICE"),
    (200, "CUDA_ERROR_INVALID_IMAGE"),
    (201, "CUDA_ERROR_INVALID_CONTEXT"),
    (209, "CUDA_ERROR_NO_BINARY_FOR_GPU"),
    (214, "CUDA_ERROR_ECC_UNCORRECTABLE"),
    (218, "CUDA_ERROR_INVALID_PTX"),
    (400, "CUDA_ERROR_INVALID_HANDLE"),
    (500, "CUDA_ERROR_NOT_FOUND"),
    (600, "CUDA_ERROR_NOT_READY"),
    (700, "CUDA_ERROR_ILLEGAL_ADDRESS"),
    (701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"),
    (702, "CUDA_ERROR_LAUNCH_TIMEOUT"),
    (710, "CUDA_ERROR_ASSERT"),
    (719, "CUDA_ERROR_LAUNCH_FAILED"),
    (720, "CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE"),
    (801, "CUDA_ERROR_NOT_SUPPORTED"),
    (802, "CUDA_ERROR_SYSTEM_NOT_READY"),
    (999, "CUDA_ERROR_UNKNOWN"),
];

/// The name of result `code` of function `call`: a `cudaError_t` for the runtime's functions
/// (`cuda*`), a `CUresult` for the driver's. A code without a name here is said as a number, in
/// a form the pattern database still takes for a CUDA error.
pub(crate) fn error_name(call: &str, code: u32) -> String {
    let runtime = call.starts_with("cuda");
    let table: &[(u32, &str)] = if runtime { &RUNTIME } else { &DRIVER };
    match table.iter().find(|(c, _)| *c == code) {
        Some((_, name)) => name.to_string(),
        None if runtime => format!("cudaError{code}"),
        None => format!("CUDA_ERROR_{code}"),
    }
}

/// A failed CUDA call, as the errors family takes it: classified by its message, as a printed
/// error would be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CudaCallFailure {
    pub tid: u32,
    pub timestamp_ns: u64,
    /// The function called (`cudaMalloc`).
    pub call: String,
    pub code: u32,
    /// The code's name (`cudaErrorMemoryAllocation`).
    pub error: String,
    /// Bytes asked for (an allocation), copied or mapped; 0 otherwise.
    pub bytes: u64,
    /// The host stack's addresses, innermost first (the return address first).
    pub stack: Vec<u64>,
}

impl CudaCallFailure {
    /// What the errors family shows and classifies:
    /// `cudaMalloc(4294967296 bytes) = cudaErrorMemoryAllocation (2)`.
    pub(crate) fn message(&self) -> String {
        let args = if self.bytes > 0 {
            format!("{} bytes", self.bytes)
        } else {
            String::new()
        };
        format!("{}({args}) = {} ({})", self.call, self.error, self.code)
    }
}

/// The failed calls the gpu family hands to the errors family once it has read them
/// (`harvest`), for the errors section: shared by the two families.
pub(crate) type ErrorsFeed = std::sync::Arc<std::sync::Mutex<Vec<CudaCallFailure>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_by_their_api() {
        assert_eq!(error_name("cudaMalloc", 2), "cudaErrorMemoryAllocation");
        assert_eq!(error_name("cuMemAlloc_v2", 2), "CUDA_ERROR_OUT_OF_MEMORY");
        assert_eq!(
            error_name("cudaMemcpy", 21),
            "cudaErrorInvalidMemcpyDirection"
        );
        assert_eq!(
            error_name("cuLaunchKernel", 400),
            "CUDA_ERROR_INVALID_HANDLE"
        );
        assert_eq!(error_name("cudaFree", 12345), "cudaError12345");
        assert_eq!(error_name("cuMemFree_v2", 12345), "CUDA_ERROR_12345");
        for table in [&RUNTIME[..], &DRIVER[..]] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique");
        }
    }

    #[test]
    fn the_message_names_the_call_the_bytes_and_the_error() {
        let f = CudaCallFailure {
            call: "cudaMalloc".into(),
            code: 2,
            error: "cudaErrorMemoryAllocation".into(),
            bytes: 4 << 30,
            ..CudaCallFailure::default()
        };
        assert_eq!(
            f.message(),
            "cudaMalloc(4294967296 bytes) = cudaErrorMemoryAllocation (2)"
        );
        let g = CudaCallFailure {
            call: "cudaDeviceSynchronize".into(),
            code: 700,
            error: "cudaErrorIllegalAddress".into(),
            ..CudaCallFailure::default()
        };
        assert_eq!(
            g.message(),
            "cudaDeviceSynchronize() = cudaErrorIllegalAddress (700)"
        );
    }
}
