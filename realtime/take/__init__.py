"""Writing a performance (a take) to files: Live Link Face CSV, glTF binary, point cache, npz."""
