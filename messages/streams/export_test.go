package streams

// AtLeast exports atLeast to the tests.
var AtLeast = atLeast
