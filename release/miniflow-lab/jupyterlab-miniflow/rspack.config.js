// Module ids by order, not by a hash of the modules' absolute paths: the committed assets are then
// the same whichever folder builds them (tests/test_extension.py rebuilds them in a scratch copy).
module.exports = {
  optimization: {
    moduleIds: 'natural'
  }
};
