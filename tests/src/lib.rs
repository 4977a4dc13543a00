//! Test support shared by keymash's integration tests: throwaway network namespaces, process
//! guards and shared-memory cleanup, each removed on drop even when a test fails.
#![forbid(unsafe_code)]
