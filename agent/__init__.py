"""voxroom.agent"""
