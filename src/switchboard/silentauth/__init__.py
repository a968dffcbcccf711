"""Silent authentication (flowType=SAUTH): the operator confirms the device's number, else an OTP."""
